/* test_list.c - the intrusive list: order, removal while walking, moving, container_of. */
#include "check.h"
#include "keyway/list.h"

struct item {
	int value;
	struct kw_list link;
};

static int values(struct kw_list *head, int *out, int max)
{
	struct kw_list *pos;
	int n = 0;
	kw_list_for_each(pos, head)
	{
		if (n < max)
			out[n] = kw_container_of(pos, struct item, link)->value;
		n++;
	}
	return n;
}

int main(void)
{
	struct kw_list head = KW_LIST_HEAD_INIT(head), other;
	struct item it[5];
	int v[8];

	CHECK(kw_list_empty(&head));
	CHECK(kw_list_first(&head) == NULL);
	CHECK(kw_list_entry(kw_list_first(&head), struct item, link) == NULL);
	for (int i = 0; i < 5; i++) {
		it[i].value = i;
		kw_list_init(&it[i].link);
		CHECK(!kw_list_linked(&it[i].link));
	}
	kw_list_add_tail(&head, &it[1].link);
	kw_list_add_tail(&head, &it[2].link);
	kw_list_add(&head, &it[0].link);
	kw_list_add_tail(&head, &it[3].link);
	CHECK_EQ(values(&head, v, 8), 4);
	CHECK(v[0] == 0 && v[1] == 1 && v[2] == 2 && v[3] == 3);
	CHECK(kw_list_entry(kw_list_first(&head), struct item, link) == &it[0]);
	CHECK(kw_list_linked(&it[2].link));

	/* Removing while walking, with the _safe form. */
	struct kw_list *pos, *tmp;
	kw_list_for_each_safe(pos, tmp, &head)
	{
		if (kw_container_of(pos, struct item, link)->value % 2 == 1)
			kw_list_del(pos);
	}
	CHECK_EQ(values(&head, v, 8), 2);
	CHECK(v[0] == 0 && v[1] == 2);
	CHECK(!kw_list_linked(&it[1].link));
	kw_list_del(&it[1].link); /* deleting an unlinked node is harmless */
	CHECK_EQ(values(&head, v, 8), 2);

	/* Moving every node keeps the order and empties the source. */
	kw_list_move_all(&other, &head);
	CHECK(kw_list_empty(&head));
	CHECK_EQ(values(&other, v, 8), 2);
	CHECK(v[0] == 0 && v[1] == 2);
	kw_list_add_tail(&other, &it[4].link);
	CHECK_EQ(values(&other, v, 8), 3);
	CHECK(v[2] == 4);
	kw_list_move_all(&head, &head); /* an empty source gives an empty destination */
	CHECK(kw_list_empty(&head));
	CHECK_DONE();
}
