/*
 * quic_hs.c - the handshake threads (see quic_hs.h). One process-wide
 * queue, FIFO, served by a fixed number of threads started with the first
 * port; they live as long as the process. Each port keeps its own list of
 * finished jobs and a count of jobs not yet finished, so a worker can wait
 * for its own jobs (at shutdown) without waiting for anyone else's.
 */
#include "quic_hs.h"

#include <pthread.h>
#include <stdlib.h>

#include "keyway/log.h"

struct kpx_qhs_port {
	struct kw_loop *loop;
	pthread_mutex_t mu;
	pthread_cond_t idle; /* signalled when inflight drops to 0 */
	struct kpx_qhs_job *done, **done_tail;
	unsigned inflight; /* submitted and not yet finished */
};

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static struct kpx_qhs_job *queue, **queue_tail = &queue;
static unsigned nstarted;

static void finish(struct kpx_qhs_job *j)
{
	struct kpx_qhs_port *p = j->port;
	pthread_mutex_lock(&p->mu);
	j->next = NULL;
	*p->done_tail = j;
	p->done_tail = &j->next;
	if (--p->inflight == 0)
		pthread_cond_broadcast(&p->idle);
	/* Under the lock: the port may be freed as soon as inflight is 0 and it is released. */
	kw_loop_wake(p->loop);
	pthread_mutex_unlock(&p->mu);
}

static void *pool_main(void *arg)
{
	for (;;) {
		pthread_mutex_lock(&pool_mu);
		while (queue == NULL)
			pthread_cond_wait(&pool_cv, &pool_mu);
		struct kpx_qhs_job *j = queue;
		queue = j->next;
		if (queue == NULL)
			queue_tail = &queue;
		pthread_mutex_unlock(&pool_mu);
		j->run(j);
		finish(j);
	}
	return NULL;
}

/* start_pool starts up to n threads (once for the process; later calls add none). */
static void start_pool(unsigned n)
{
	pthread_mutex_lock(&pool_mu);
	for (; nstarted < n; nstarted++) {
		pthread_t t;
		if (pthread_create(&t, NULL, pool_main, NULL) != 0) {
			kw_warn("cannot start a QUIC handshake thread; %u running", nstarted);
			break;
		}
		pthread_detach(t);
	}
	pthread_mutex_unlock(&pool_mu);
}

struct kpx_qhs_port *kpx_qhs_port_new(struct kw_loop *loop, unsigned nthreads)
{
	struct kpx_qhs_port *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	start_pool(nthreads);
	if (nstarted == 0) {
		free(p);
		return NULL;
	}
	p->loop = loop;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->idle, NULL);
	p->done_tail = &p->done;
	return p;
}

void kpx_qhs_submit(struct kpx_qhs_port *p, struct kpx_qhs_job *j)
{
	j->port = p;
	j->next = NULL;
	pthread_mutex_lock(&p->mu);
	p->inflight++;
	pthread_mutex_unlock(&p->mu);
	pthread_mutex_lock(&pool_mu);
	*queue_tail = j;
	queue_tail = &j->next;
	pthread_cond_signal(&pool_cv);
	pthread_mutex_unlock(&pool_mu);
}

struct kpx_qhs_job *kpx_qhs_collect(struct kpx_qhs_port *p)
{
	pthread_mutex_lock(&p->mu);
	struct kpx_qhs_job *l = p->done;
	p->done = NULL;
	p->done_tail = &p->done;
	pthread_mutex_unlock(&p->mu);
	return l;
}

void kpx_qhs_wait(struct kpx_qhs_port *p)
{
	pthread_mutex_lock(&p->mu);
	while (p->inflight > 0)
		pthread_cond_wait(&p->idle, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

void kpx_qhs_port_free(struct kpx_qhs_port *p)
{
	if (p == NULL)
		return;
	kpx_qhs_wait(p);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->idle);
	free(p);
}
