/*
 * test_rsa_batch_ops.c - batches gathered from offload ops: kw_op_compute_many
 * gives each op the result kw_op_compute gives (signatures verify, raw
 * decryptions equal OpenSSL's), batches only the RSA ops that allow it,
 * sends too few lanes to OpenSSL, and the threads backend's crypto threads
 * run queued ops through it. KEYWAY_RSA_BATCH_MIN_LANES fixes the threshold,
 * so the gathering is tested on any CPU (without the IFMA kernel the batch
 * computes its lanes with OpenSSL).
 */
#include "backend_fixture.h"
#include "keyway/rsa_batch_plan.h"

static EVP_PKEY *rsa1024;

/* new_raw makes a raw decryption op of rsa on a random integer below n, in_len bytes long. */
static struct top *new_raw(size_t in_len)
{
	struct top *t = new_op(rsa);
	uint8_t *c = malloc(256);
	RAND_bytes(c, 256);
	c[0] = 0; /* below n */
	t->op.opcode = KW_OP_RSA_DECRYPT;
	t->op.in = c + (256 - in_len);
	t->op.in_len = in_len;
	return t;
}

static void free_top(struct top *t)
{
	if (t->op.opcode == KW_OP_RSA_DECRYPT)
		free((void *)(t->op.in - (256 - t->op.in_len)));
	kw_op_unref(&t->op);
}

/* same_as_openssl computes t's op again with kw_op_compute and compares. */
static int same_as_openssl(struct top *t)
{
	struct kw_op o;
	kw_op_init(&o, KW_OPK_ASYM, t->op.opcode);
	o.pkey = t->op.pkey;
	o.in = t->op.in;
	o.in_len = t->op.in_len;
	int ok = kw_op_compute(&o) == 0 && o.out_len == t->op.out_len &&
	         memcmp(o.out, t->op.out, o.out_len) == 0;
	return ok;
}

static void test_mixed(void)
{
	struct top *t[8];
	struct kw_op *ops[8];
	struct kw_rsa_batch_counts c = {0};

	setenv("KEYWAY_RSA_BATCH_MIN_LANES", "1", 1);
	t[0] = new_op(rsa);  /* PSS */
	t[1] = new_op(p256); /* not RSA: OpenSSL */
	t[2] = new_raw(256); /* raw decryption, full length */
	t[3] = new_raw(200); /* shorter: left-padded */
	t[4] = new_op(rsa);  /* PKCS#1 v1.5 */
	t[4]->op.opcode = KW_OP_RSA_SIGN_SHA256;
	t[5] = new_op(rsa); /* not allowed to batch */
	t[6] = new_op(rsa); /* a size the kernel does not take */
	t[6]->op.pkey = rsa1024;
	t[7] = new_op(rsa);
	for (int i = 0; i < 8; i++) {
		t[i]->op.rsa_batch = i != 5;
		ops[i] = &t[i]->op;
	}
	kw_op_compute_many(ops, 8, &c);
	CHECK_EQ(c.batches, 1);
	CHECK_EQ(c.lanes, 5); /* 0, 2, 3, 4, 7 */
	CHECK_EQ(c.fallbacks, 0);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(t[i]->op.status, 0);
	CHECK(verifies(t[0]) && verifies(t[1]) && verifies(t[5]) && verifies(t[7]));
	CHECK(same_as_openssl(t[2]) && same_as_openssl(t[3]) && same_as_openssl(t[4]));
	CHECK_EQ(t[2]->op.out_len, 256);
	CHECK_EQ(t[6]->op.out_len, 128);
	for (int i = 0; i < 8; i++)
		free_top(t[i]);
}

/* Fewer lanes than the threshold go to OpenSSL one by one; as many make a batch. */
static void test_threshold(void)
{
	struct top *t[3];
	struct kw_op *ops[3];
	struct kw_rsa_batch_counts c = {0};

	setenv("KEYWAY_RSA_BATCH_MIN_LANES", "3", 1);
	for (int i = 0; i < 3; i++) {
		t[i] = new_op(rsa);
		t[i]->op.rsa_batch = true;
		ops[i] = &t[i]->op;
	}
	kw_op_compute_many(ops, 2, &c);
	CHECK(c.batches == 0 && c.lanes == 0 && c.fallbacks == 2);
	kw_op_compute_many(ops, 3, &c);
	CHECK(c.batches == 1 && c.lanes == 3 && c.fallbacks == 2);
	for (int i = 0; i < 3; i++) {
		CHECK(verifies(t[i]));
		free_top(t[i]);
	}
	/* A bad input costs its op only: a ciphertext not below n, in a batch. */
	struct top *bad = new_raw(256), *good = new_op(rsa);
	memset((void *)bad->op.in, 0xff, 256);
	bad->op.rsa_batch = good->op.rsa_batch = true;
	ops[0] = &bad->op;
	ops[1] = &good->op;
	setenv("KEYWAY_RSA_BATCH_MIN_LANES", "1", 1);
	kw_op_compute_many(ops, 2, NULL);
	CHECK_EQ(bad->op.status, -KW_ECRYPTO);
	CHECK_EQ(bad->op.out_len, 0);
	CHECK(good->op.status == 0 && verifies(good));
	free_top(bad);
	free_top(good);
}

/* The measured threshold: a kernel run against OpenSSL per op. */
static void test_lanes_needed(void)
{
	/* Six lanes cost 5 OpenSSL ops, eight barely more: the smallest kernel run pays. */
	CHECK_EQ(kw_rsa_batch_lanes_needed(2000, 2100, 400), KW_RSA_BATCH_MIN_KERNEL);
	/* Six lanes cost 6.3 OpenSSL ops, seven 6.8, eight 7.3: from seven lanes. */
	CHECK_EQ(kw_rsa_batch_lanes_needed(2600, 3000, 410), 7);
	/* Lanes costing what OpenSSL does (no kernel): never. */
	CHECK_EQ(kw_rsa_batch_lanes_needed(6000, 8000, 1000), KW_RSA_BATCH_NEVER);
	/* A small run that looks cheap but a full batch dearer than 8 OpenSSL ops (an
	 * unoptimised kernel): never, since gatherers fill batches up to eight. */
	CHECK_EQ(kw_rsa_batch_lanes_needed(3000, 260000, 4600), KW_RSA_BATCH_NEVER);
	/* A failed measurement (0) never reads as a batch that costs nothing. */
	CHECK_EQ(kw_rsa_batch_lanes_needed(250, 0, 240), KW_RSA_BATCH_NEVER);
	CHECK_EQ(kw_rsa_batch_lanes_needed(0, 0, 0), KW_RSA_BATCH_NEVER);
}

/* A crypto thread batches what is queued for it; every op completes once and verifies. */
static void test_threads_backend(void)
{
	enum { N = 40 };
	struct kw_backend *b = NULL;
	struct top *t[N];
	struct kw_threads_stats st;

	setenv("KEYWAY_RSA_BATCH_MIN_LANES", "1", 1);
	CHECK_EQ(kw_backend_threads_new(&b, 1, 64), 0);
	for (int i = 0; i < N; i++) {
		t[i] = new_op(i % 5 == 4 ? p256 : rsa);
		t[i]->op.rsa_batch = true;
		CHECK_EQ(kw_backend_submit(b, &t[i]->op), 0);
	}
	CHECK_EQ(poll_all(b, N), N);
	for (int i = 0; i < N; i++) {
		CHECK_EQ(t[i]->done_calls, 1);
		CHECK_EQ(t[i]->status_seen, 0);
		CHECK(verifies(t[i]));
		free_top(t[i]);
	}
	CHECK_EQ(kw_backend_threads_stats(b, &st), 0);
	CHECK_EQ(st.completed, N);
	CHECK(st.rsa_batches >= 1 && st.rsa_batches <= st.rsa_batch_lanes);
	CHECK_EQ(st.rsa_batch_lanes, N / 5 * 4); /* every RSA op, none of the P-256 ones */
	CHECK_EQ(st.rsa_batch_fallbacks, 0);
	kw_backend_free(b);

	/* Ops that do not allow batching are never batched. */
	CHECK_EQ(kw_backend_threads_new(&b, 1, 64), 0);
	for (int i = 0; i < 8; i++) {
		t[i] = new_op(rsa);
		CHECK_EQ(kw_backend_submit(b, &t[i]->op), 0);
	}
	CHECK_EQ(poll_all(b, 8), 8);
	for (int i = 0; i < 8; i++) {
		CHECK(verifies(t[i]));
		free_top(t[i]);
	}
	CHECK_EQ(kw_backend_threads_stats(b, &st), 0);
	CHECK(st.rsa_batches == 0 && st.rsa_batch_lanes == 0 && st.rsa_batch_fallbacks == 0);
	kw_backend_free(b);
}

int main(void)
{
	backend_fixture_keys();
	rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	CHECK(rsa1024 != NULL);
	test_mixed();
	test_threshold();
	test_lanes_needed();
	test_threads_backend();
	EVP_PKEY_free(rsa1024);
	backend_fixture_free();
	CHECK_EQ(released, 8 + 3 + 2 + 40 + 8); /* every op freed, once */
	CHECK_DONE();
}
