/*
 * list.h - the intrusive circular doubly-linked list of keyway-proxy's
 * connections and wait lists. A lone node points to itself, so a node can
 * be taken off whatever list it is on without knowing which.
 */
#ifndef KPX_LIST_H
#define KPX_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct kpx_list {
	struct kpx_list *prev, *next;
};

/* kpx_list_entry is the object of type `type` whose `member` is the node l. */
#define kpx_list_entry(l, type, member) ((type *)(void *)((char *)(l)-offsetof(type, member)))

static inline void kpx_list_init(struct kpx_list *l)
{
	l->prev = l->next = l;
}
static inline bool kpx_list_empty(const struct kpx_list *l)
{
	return l->next == l;
}
static inline void kpx_list_add_tail(struct kpx_list *head, struct kpx_list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}
static inline void kpx_list_del(struct kpx_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	kpx_list_init(n);
}
/* kpx_list_move takes every node of from (left empty) onto the empty list to. */
static inline void kpx_list_move(struct kpx_list *to, struct kpx_list *from)
{
	kpx_list_init(to);
	if (kpx_list_empty(from))
		return;
	*to = *from;
	to->next->prev = to;
	to->prev->next = to;
	kpx_list_init(from);
}

#endif
