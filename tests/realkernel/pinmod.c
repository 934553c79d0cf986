// SPDX-License-Identifier: GPL-2.0
/*
 * pinmod: test module of pinspect's real-kernel tier (cma61).
 *
 * It behaves like a GPU driver's buffer objects: pages of a private shmem file, allocated from
 * the module's own functions (so that page_owner's allocation stacks carry [pinmod] frames), of
 * which some stay held by the module with one extra reference each (pinned, evidence "extra"
 * in pinspect's terms) and the rest are released again (controls: page cache pages with the
 * same kind of stack and no extra reference).
 *
 * Interface: /sys/kernel/debug/pinmod/pages
 *   write "N H"  allocate N more pages and hold the first H of them
 *   read         one line per page: "index pfn held" (the pfn where the page is now)
 *
 * Built out of tree against the kernel's build tree by build-kernel.sh; loaded by init.sh.
 */
#include <linux/debugfs.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pagemap.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#define PINMOD_MAX_PAGES 64

static struct dentry *pinmod_dir;
static struct file *pinmod_file;       /* the shmem file that backs the pages */
static struct page *pinmod_held[PINMOD_MAX_PAGES]; /* NULL: released */
static unsigned long pinmod_count;     /* pages allocated so far (file indices 0..count-1) */
static DEFINE_MUTEX(pinmod_lock);

/*
 * The next page of the file, allocated here: the page cache's reference plus ours. Marked dirty
 * so that a drop_caches in the guest never takes it out of the page cache (a clean shmem page
 * can go). (The work after the call also keeps it from becoming a tail call: this frame stays
 * on the allocation stack.)
 */
static noinline struct page *pinmod_alloc_page(void)
{
	struct address_space *mapping = pinmod_file->f_mapping;
	struct page *page;

	page = shmem_read_mapping_page_gfp(mapping, pinmod_count, mapping_gfp_mask(mapping));
	if (!IS_ERR(page)) {
		set_page_dirty(page);
		pinmod_count++;
	}
	return page;
}

/* Allocate n more pages; keep the reference on the first hold of them, drop it on the rest. */
static noinline int pinmod_fill(unsigned long n, unsigned long hold)
{
	unsigned long i;

	if (n > PINMOD_MAX_PAGES - pinmod_count || hold > n)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		struct page *page = pinmod_alloc_page();

		if (IS_ERR(page))
			return PTR_ERR(page);
		if (i < hold)
			pinmod_held[pinmod_count - 1] = page;
		else
			put_page(page);
	}
	return 0;
}

static noinline ssize_t pinmod_write(struct file *file, const char __user *buf, size_t len,
				     loff_t *ppos)
{
	char text[32];
	unsigned long n, hold;
	int err;

	if (len >= sizeof(text))
		return -EINVAL;
	if (copy_from_user(text, buf, len))
		return -EFAULT;
	text[len] = 0;
	if (sscanf(text, "%lu %lu", &n, &hold) != 2)
		return -EINVAL;
	mutex_lock(&pinmod_lock);
	err = pinmod_fill(n, hold);
	mutex_unlock(&pinmod_lock);
	return err ? err : (ssize_t)len;
}

static ssize_t pinmod_read(struct file *file, char __user *buf, size_t len, loff_t *ppos)
{
	const size_t size = PINMOD_MAX_PAGES * 40;
	char *text = kmalloc(size, GFP_KERNEL);
	size_t used = 0;
	unsigned long i;
	ssize_t ret;

	if (!text)
		return -ENOMEM;
	mutex_lock(&pinmod_lock);
	for (i = 0; i < pinmod_count; i++) {
		struct page *page = pinmod_held[i];
		unsigned long pfn = 0;

		if (page) {
			pfn = page_to_pfn(page);
		} else {
			/* a released page may have moved (compaction): look it up again */
			page = find_get_page(pinmod_file->f_mapping, i);
			if (page) {
				pfn = page_to_pfn(page);
				put_page(page);
			}
		}
		used += scnprintf(text + used, size - used, "%lu %lu %d\n", i, pfn,
				  pinmod_held[i] != NULL);
	}
	mutex_unlock(&pinmod_lock);
	ret = simple_read_from_buffer(buf, len, ppos, text, used);
	kfree(text);
	return ret;
}

static const struct file_operations pinmod_fops = {
	.owner = THIS_MODULE,
	.read = pinmod_read,
	.write = pinmod_write,
	.llseek = default_llseek,
};

static int __init pinmod_init(void)
{
	pinmod_file = shmem_file_setup("pinmod", PINMOD_MAX_PAGES * PAGE_SIZE, VM_NORESERVE);
	if (IS_ERR(pinmod_file))
		return PTR_ERR(pinmod_file);
	/* not movable, as GPU drivers ask for their shmem-backed objects */
	mapping_set_gfp_mask(pinmod_file->f_mapping, GFP_HIGHUSER | __GFP_RECLAIMABLE);
	pinmod_dir = debugfs_create_dir("pinmod", NULL);
	debugfs_create_file("pages", 0600, pinmod_dir, NULL, &pinmod_fops);
	return 0;
}

static void __exit pinmod_exit(void)
{
	unsigned long i;

	debugfs_remove_recursive(pinmod_dir);
	for (i = 0; i < pinmod_count; i++)
		if (pinmod_held[i])
			put_page(pinmod_held[i]);
	fput(pinmod_file);
}

module_init(pinmod_init);
module_exit(pinmod_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("pinspect test module: shmem pages held with an extra reference");
