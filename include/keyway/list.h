/*
 * keyway/list.h - an intrusive, circular, doubly linked list (the Linux
 * kernel's shape): a struct kw_list node is embedded in each element, a
 * struct kw_list head (a sentinel) in the owner, and kw_container_of gets
 * back from a node to its element. No allocation, O(1) insert and remove.
 *
 * A head must be initialised with kw_list_init (or KW_LIST_HEAD_INIT) before
 * use. A node that is not in a list should be kw_list_init'ed too, so
 * kw_list_linked can tell; kw_list_del re-initialises the node it removes.
 * Nothing here is thread-safe.
 */
#ifndef KEYWAY_LIST_H
#define KEYWAY_LIST_H

#include <stdbool.h>
#include <stddef.h>

/* kw_container_of returns the struct of type `type` whose `member` is at ptr. */
#define kw_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct kw_list {
	struct kw_list *next, *prev;
};

/* KW_LIST_HEAD_INIT(name) statically initialises head `name` as empty. */
#define KW_LIST_HEAD_INIT(name)                                                                    \
	{                                                                                          \
		&(name), &(name)                                                                   \
	}

/* kw_list_init makes l an empty head (or an unlinked node). */
static inline void kw_list_init(struct kw_list *l)
{
	l->next = l->prev = l;
}

/* kw_list_empty tells whether head has no element. */
static inline bool kw_list_empty(const struct kw_list *head)
{
	return head->next == head;
}

/* kw_list_linked tells whether node is in a list (it was initialised or deleted otherwise). */
static inline bool kw_list_linked(const struct kw_list *node)
{
	return node->next != node;
}

static inline void kw_list__between(struct kw_list *n, struct kw_list *prev, struct kw_list *next)
{
	n->prev = prev;
	n->next = next;
	prev->next = n;
	next->prev = n;
}

/* kw_list_add inserts node first (after head). */
static inline void kw_list_add(struct kw_list *head, struct kw_list *node)
{
	kw_list__between(node, head, head->next);
}

/* kw_list_add_tail inserts node last (before head): a FIFO's push. */
static inline void kw_list_add_tail(struct kw_list *head, struct kw_list *node)
{
	kw_list__between(node, head->prev, head);
}

/* kw_list_del unlinks node and re-initialises it; a no-op on an unlinked node. */
static inline void kw_list_del(struct kw_list *node)
{
	node->prev->next = node->next;
	node->next->prev = node->prev;
	kw_list_init(node);
}

/* kw_list_move_all moves every node of src, in order, to dst (which must be empty); src empties. */
static inline void kw_list_move_all(struct kw_list *dst, struct kw_list *src)
{
	if (kw_list_empty(src)) {
		kw_list_init(dst);
		return;
	}
	dst->next = src->next;
	dst->prev = src->prev;
	dst->next->prev = dst;
	dst->prev->next = dst;
	kw_list_init(src);
}

/* kw_list_first returns the first node, or NULL when head is empty. */
static inline struct kw_list *kw_list_first(const struct kw_list *head)
{
	return kw_list_empty(head) ? NULL : head->next;
}

/* kw_list_entry returns the element holding node (NULL stays NULL). */
#define kw_list_entry(node, type, member)                                                          \
	((node) == NULL ? (type *)NULL : kw_container_of(node, type, member))

/* kw_list_for_each walks head's nodes; pos must not be removed (see _safe). */
#define kw_list_for_each(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

/* kw_list_for_each_safe walks head's nodes; the loop body may remove pos. */
#define kw_list_for_each_safe(pos, tmp, head)                                                      \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                           \
	     (pos) = (tmp), (tmp) = (pos)->next)

#endif
