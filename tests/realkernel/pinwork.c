/*
 * pinwork: guest workload of pinspect's real-kernel test tier.
 *
 * Pins pages in known ways, then prints one ground-truth line per page on stdout:
 *   PINGT {"kind":...,"pid":...,"comm":...,"vaddr":...,"pfn":...,...}
 * and finally "PINSPECT-READY"; then it waits forever so that the host can dump the guest.
 *
 * Ways of pinning:
 *   io_uring registered (fixed) buffers: pin_user_pages(FOLL_WRITE | FOLL_LONGTERM), i.e. FOLL_PIN
 *   vmsplice() into a pipe that nobody reads: one FOLL_GET reference per page and pipe buffer
 *   KSM (where the kernel has it, /sys/kernel/mm/ksm/run): pages of identical content in this
 *   process and in a forked child (its own mm) merged by ksmd into KSM pages, some of them then
 *   spliced (vmsplice, FOLL_GET without FOLL_WRITE: the page stays KSM) into a pipe
 *
 * Built with gcc -static; raw syscalls only (no liburing).
 *
 * Usage: pinwork [--cma] [--page-owner]
 *   --cma         also find pages inside the CMA area (from the kernel log) and pin some
 *   --page-owner  read /sys/kernel/debug/page_owner for some pinned pfns
 *   --no-drain    skip compaction and the LRU drain (to show that the tests need them)
 *   --compact-only compaction (from CPU 0) but no migrate_pages drain
 *   --pinmod      have the test module pinmod.ko (pinmod.c, loaded by /init) allocate pages and
 *                 hold some; report them as PINMOD lines (their page_owner records as
 *                 PINMODOWNER), apart from the PINGT pages: they are mapped by no process
 *   --pinner      (pp61, page_pinner kernel) pin 3 more CMA pages, then with the page_ref events
 *                 of the CMA area traced: allocate the whole CMA area through
 *                 /sys/kernel/debug/cma/<area>/alloc (fails on the pinned pages), compact
 *                 memory, release the 3 extra pins; stop tracing, copy the trace text to the 9p
 *                 share "out" (trace.txt) and log the pfns: PINLOG pinner {...}
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define HPAGE (2UL << 20)

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#define __NR_io_uring_register 427
#endif
#define IORING_REGISTER_BUFFERS 0

/* struct io_uring_params as the kernel ABI defines it (120 bytes). */
struct uring_params {
	uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd;
	uint32_t resv[3];
	uint64_t sq_off[5];
	uint64_t cq_off[5];
};

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("PINERR ");
	vprintf(fmt, ap);
	printf(" (errno %d %s)\n", errno, strerror(errno));
	va_end(ap);
	fflush(stdout);
	for (;;)
		pause();
}

static int uring_new(void)
{
	struct uring_params p;
	memset(&p, 0, sizeof(p));
	int fd = (int)syscall(__NR_io_uring_setup, 4, &p);
	if (fd < 0)
		die("io_uring_setup");
	return fd;
}

/* FOLL_PIN | FOLL_LONGTERM on [addr, addr+len) via a new ring with one registered buffer. */
static int uring_pin(void *addr, size_t len)
{
	int fd = uring_new();
	struct iovec iov = { addr, len };
	if (syscall(__NR_io_uring_register, fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0)
		return -errno;
	return fd;
}

/* FOLL_GET on each page of [addr, addr+len): vmsplice into a fresh pipe that is never read. */
static int vmsplice_get(void *addr, size_t len)
{
	int p[2];
	if (pipe(p) < 0)
		die("pipe");
	if (len > 16 * PAGE && fcntl(p[1], F_SETPIPE_SZ, (int)len) < 0)
		die("F_SETPIPE_SZ");
	struct iovec iov = { addr, len };
	ssize_t n = vmsplice(p[1], &iov, 1, 0);
	if (n != (ssize_t)len)
		die("vmsplice returned %zd of %zu", n, len);
	return p[0];
}

static void *map(size_t len, int flags)
{
	void *a = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (a == MAP_FAILED)
		die("mmap %zu", len);
	return a;
}

static void touch(void *addr, size_t len, int tag)
{
	for (size_t off = 0; off < len; off += PAGE)
		((volatile char *)addr)[off] = (char)(tag + 1 + (int)(off / PAGE));
}

/* ---- ground truth records ---- */

struct rec {
	const char *kind;   /* what this page is */
	const char *method; /* io_uring_fixed, vmsplice, none */
	const char *mapping;/* anon, shmem */
	void *vaddr;
	int pid;            /* process whose pagemap gives the pfn */
	int pins;           /* FOLL_PIN pins per base page (io_uring registrations) */
	int gets;           /* FOLL_GET references per base page (vmsplice) */
	int mapcount;       /* page-table mappings of the page (folio for THP) */
	int nr_pages;       /* folio size */
	int pinned;         /* 0 for control pages */
	unsigned long pfn;
	unsigned long long pm;
};

#define MAXREC 256
static struct rec recs[MAXREC];
static int nrec;

static void add(const char *kind, const char *method, const char *mapping, void *vaddr, int pins,
		int gets, int mapcount, int nr_pages)
{
	if (nrec == MAXREC)
		die("too many records");
	struct rec *r = &recs[nrec++];
	r->kind = kind;
	r->method = method;
	r->mapping = mapping;
	r->vaddr = vaddr;
	r->pid = getpid();
	r->pins = pins;
	r->gets = gets;
	r->mapcount = mapcount;
	r->nr_pages = nr_pages;
	r->pinned = pins > 0 || gets > 0;
}

static void add_range(const char *kind, const char *method, const char *mapping, void *addr,
		      size_t len, int pins, int gets, int mapcount)
{
	for (size_t off = 0; off < len; off += PAGE)
		add(kind, method, mapping, (char *)addr + off, pins, gets, mapcount, 1);
}

static unsigned long long pagemap_entry(int fd, void *vaddr)
{
	unsigned long long e = 0;
	off_t off = (off_t)((unsigned long)vaddr / PAGE * 8);
	if (pread(fd, &e, 8, off) != 8)
		die("pagemap pread");
	return e;
}

static unsigned long pfn_of(int fd, void *vaddr)
{
	unsigned long long e = pagemap_entry(fd, vaddr);
	if (!(e >> 63))
		die("page at %p not present (pagemap %#llx)", vaddr, e);
	return (unsigned long)(e & ((1ULL << 55) - 1));
}

static unsigned long long kpageflags(unsigned long pfn)
{
	static int fd = -1;
	unsigned long long f = 0;
	if (fd < 0)
		fd = open("/proc/kpageflags", O_RDONLY);
	if (fd < 0 || pread(fd, &f, 8, (off_t)(pfn * 8)) != 8)
		return 0;
	return f;
}

/* ---- helpers for the drain and the CMA area ---- */

static void write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return;
	if (write(fd, s, strlen(s)) < 0)
		printf("PINLOG write %s: %s\n", path, strerror(errno));
	close(fd);
}

/*
 * Compaction (so that the dump shows settled memory). It may migrate unpinned pages, so it runs
 * before the pages of the CMA area are searched and before pagemap is read. Writing
 * compact_memory also drains every CPU's LRU batches (compact_nodes() starts with
 * lru_add_drain_all()): measured with --compact-only, compaction from CPU 0 alone settles the
 * pages faulted on CPU 1 on 6.1 and 6.12.
 */
static void run_on_cpu(int cpu)
{
	cpu_set_t cpus;
	CPU_ZERO(&cpus);
	CPU_SET(cpu, &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus) < 0)
		die("sched_setaffinity");
}

static int ncpu = 1;

static void compact(void)
{
	/* from CPU 0, so that only a drain of all CPUs settles the pages faulted on CPU 1 */
	if (ncpu >= 2)
		run_on_cpu(0);
	write_file("/proc/sys/vm/drop_caches", "1");
	write_file("/proc/sys/vm/compact_memory", "1");
	if (ncpu >= 2)
		run_on_cpu(1);
}

/*
 * Per-CPU LRU batches hold one extra reference on freshly faulted pages. migrate_pages(2) from
 * node 0 to node 0 moves nothing but starts with lru_add_drain_all(); it settles what was faulted
 * after the compaction (the CMA search).
 */
static void drain(void)
{
	unsigned long nodes = 1;
	for (int i = 0; i < 2; i++)
		if (syscall(SYS_migrate_pages, 0, 8 * sizeof(nodes), &nodes, &nodes) < 0)
			printf("PINLOG migrate_pages: %s\n", strerror(errno));
}

/* The CMA area from the boot log: "cma: Reserved <n> MiB at 0x<phys>". */
static int cma_range(unsigned long *base_pfn, unsigned long *npages)
{
	static char log[1 << 20];
	int n = (int)syscall(SYS_syslog, 3 /* READ_ALL */, log, (int)sizeof(log) - 1);
	if (n <= 0)
		return -1;
	log[n] = 0;
	char *p = strstr(log, "cma: Reserved ");
	if (!p)
		return -1;
	unsigned long mib = 0;
	unsigned long long phys = 0;
	if (sscanf(p, "cma: Reserved %lu MiB at %llx", &mib, &phys) != 2)
		return -1;
	*base_pfn = (unsigned long)(phys / PAGE);
	*npages = mib * 256;
	return 0;
}

static const char *owner_tag = "PINOWNER";

static void print_page_owner(unsigned long pfn)
{
	int fd = open("/sys/kernel/debug/page_owner", O_RDONLY);
	if (fd < 0) {
		printf("PINLOG page_owner: %s\n", strerror(errno));
		return;
	}
	/* The file offset of page_owner is the pfn to start at (minus min_low_pfn = 0 on x86). */
	static char buf[65536];
	if (lseek(fd, (off_t)pfn, SEEK_SET) < 0) {
		printf("PINLOG page_owner lseek: %s\n", strerror(errno));
		close(fd);
		return;
	}
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	/* One JSON string: escape quotes, backslashes and newlines. */
	printf("%s {\"pfn\":%lu,\"text\":\"", owner_tag, pfn);
	for (ssize_t i = 0; i < n; i++) {
		char c = buf[i];
		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if ((unsigned char)c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	printf("\"}\n");
}

/*
 * Fault in anonymous memory until *want* pages land in the CMA area [base, base + n); keep those
 * (their addresses in out[]) and unmap the rest. Returns how many were found.
 */
static int find_cma_pages(unsigned long base, unsigned long n, char **out, int want, int priv)
{
	int pm = open("/proc/self/pagemap", O_RDONLY);
	if (pm < 0)
		die("pagemap");
	const size_t chunk = 64UL << 20;
	static unsigned long long ent[(64UL << 20) / PAGE];
	char *chunks[64];
	int nchunks = 0, found = 0;
	while (nchunks < 48 && found < want) {
		char *m = map(chunk, priv);
		chunks[nchunks++] = m;
		madvise(m, chunk, MADV_NOHUGEPAGE);
		touch(m, chunk, 11);
		if (pread(pm, ent, sizeof(ent), (off_t)((unsigned long)m / PAGE * 8)) != sizeof(ent))
			die("pagemap pread");
		for (size_t i = 0; i < chunk / PAGE && found < want; i++) {
			unsigned long pfn = (unsigned long)(ent[i] & ((1ULL << 55) - 1));
			if ((ent[i] >> 63) && pfn >= base && pfn < base + n)
				out[found++] = m + i * PAGE;
		}
	}
	/* give back everything but the pages found in the area */
	for (int k = 0; k < nchunks; k++) {
		char *m = chunks[k], *run = m;
		for (int j = 0; j < found; j++)
			if (out[j] >= m && out[j] < m + chunk) {
				if (out[j] > run && munmap(run, (size_t)(out[j] - run)) < 0)
					die("munmap");
				run = out[j] + PAGE;
			}
		if (run < m + chunk && munmap(run, (size_t)(m + chunk - run)) < 0)
			die("munmap");
	}
	close(pm);
	return found;
}

/* Write a number of pages to a CMA debugfs file; 0 or the errno of the failed write. */
static int cma_debugfs_write(const char *dir, const char *file, unsigned long pages)
{
	char path[400], val[32];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	snprintf(val, sizeof(val), "%lu", pages);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return errno;
	int err = write(fd, val, strlen(val)) < 0 ? errno : 0;
	close(fd);
	return err;
}

/* ",\"cma_debugfs\":{...}" for PINMETA, or "" when the kernel has no CMA debugfs. */
static char cma_debugfs_meta[512];

/*
 * The kernel's own verdict on the area (CONFIG_CMA_DEBUGFS, /sys/kernel/debug/cma/<area>/):
 * with two of the area's pages held by vmsplice (recorded as cma_vmsplice), cma_alloc() of the
 * whole area must fail on them, and one of 1024 pages succeed (then freed again). This runs
 * before the ground truth's CMA pages are chosen, since a failing cma_alloc() migrates what it
 * can out of its range first; the pfns of everything are read from pagemap at the end.
 */
static void cma_debugfs_allocs(unsigned long base, unsigned long n, int priv)
{
	char dir[300] = "";
	DIR *d = opendir("/sys/kernel/debug/cma");
	if (!d) {
		printf("PINLOG no CMA debugfs\n");
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.') {
			snprintf(dir, sizeof(dir), "/sys/kernel/debug/cma/%s", e->d_name);
			break;
		}
	closedir(d);
	if (!dir[0])
		return;
	char *held[2];
	if (find_cma_pages(base, n, held, 2, priv) < 2)
		die("no pages in CMA for the debugfs allocations");
	for (int i = 0; i < 2; i++) {
		vmsplice_get(held[i], PAGE);
		add("cma_vmsplice", "vmsplice", "anon", held[i], 0, 1, 1, 1);
	}
	const unsigned long ok_pages = 1024;
	int fail_err = cma_debugfs_write(dir, "alloc", n);
	int ok_err = cma_debugfs_write(dir, "alloc", ok_pages);
	int free_err = ok_err ? -1 : cma_debugfs_write(dir, "free", ok_pages);
	printf("PINLOG cma debugfs %s: alloc %lu: %s; alloc %lu: %s; free: %d\n", dir, n,
	       fail_err ? strerror(fail_err) : "ok", ok_pages, ok_err ? strerror(ok_err) : "ok",
	       free_err);
	snprintf(cma_debugfs_meta, sizeof(cma_debugfs_meta),
		 ",\"cma_debugfs\":{\"area\":\"%s\",\"fail_pages\":%lu,\"fail_errno\":%d,"
		 "\"ok_pages\":%lu,\"ok_errno\":%d,\"free_errno\":%d}",
		 dir + strlen("/sys/kernel/debug/cma/"), n, fail_err, ok_pages, ok_err, free_err);
}

/* ---- pages of the test module (pinmod.c): allocated by a module, held with an extra reference ---- */

#define PINMOD_FILE "/sys/kernel/debug/pinmod/pages"
#define PINMOD_PAGES 5
#define PINMOD_HELD 3

/* Before the compaction and the drain: the module allocates its pages (from this process, so
 * that page_owner names pinwork) and keeps a reference on the first PINMOD_HELD of them. */
static int pinmod_start(void)
{
	int fd = open(PINMOD_FILE, O_WRONLY);
	if (fd < 0) {
		printf("PINLOG no %s: %s\n", PINMOD_FILE, strerror(errno));
		return 0;
	}
	char cmd[32];
	snprintf(cmd, sizeof(cmd), "%d %d", PINMOD_PAGES, PINMOD_HELD);
	if (write(fd, cmd, strlen(cmd)) < 0)
		die("write %s", PINMOD_FILE);
	close(fd);
	return 1;
}

/* After the drain: where the module's pages are now ("index pfn held" lines), and the guest's
 * page_owner record of each held page. */
static void pinmod_report(int want_owner)
{
	static char text[4096];
	int fd = open(PINMOD_FILE, O_RDONLY);
	if (fd < 0)
		die("open %s", PINMOD_FILE);
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		die("read %s", PINMOD_FILE);
	text[n] = 0;
	unsigned long held_pfns[PINMOD_PAGES];
	int nheld = 0, lines = 0;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned long index, pfn;
		int held;
		if (sscanf(line, "%lu %lu %d", &index, &pfn, &held) != 3 || !pfn)
			die("pinmod line '%s'", line);
		printf("PINMOD {\"index\":%lu,\"pfn\":%lu,\"held\":%s,\"pid\":%d,"
		       "\"kpageflags\":%llu}\n", index, pfn, held ? "true" : "false", (int)getpid(),
		       kpageflags(pfn));
		if (held && nheld < PINMOD_PAGES)
			held_pfns[nheld++] = pfn;
		lines++;
	}
	if (lines != PINMOD_PAGES || nheld != PINMOD_HELD)
		die("pinmod reported %d pages, %d held", lines, nheld);
	if (want_owner) {
		owner_tag = "PINMODOWNER";
		for (int i = 0; i < nheld; i++)
			print_page_owner(held_pfns[i]);
		owner_tag = "PINOWNER";
	}
}

/* ---- page_pinner (pp61) ---- */

#define TRACING "/sys/kernel/tracing"

static long read_long(const char *path)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 0) : -1;
}

/* Write s to path; -errno of the write (0 on success). */
static int write_status(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	int rc = write(fd, s, strlen(s)) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* The first CMA area's debugfs directory, /sys/kernel/debug/cma/<name>. */
static int cma_debugfs(char *dir, size_t len)
{
	DIR *d = opendir("/sys/kernel/debug/cma");
	if (!d)
		return -1;
	struct dirent *e;
	int found = -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.') {
			snprintf(dir, len, "/sys/kernel/debug/cma/%s", e->d_name);
			found = 0;
			break;
		}
	closedir(d);
	return found;
}

static void copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in < 0 || out < 0) {
		printf("PINLOG copy %s -> %s: %s\n", from, to, strerror(errno));
		return;
	}
	static char buf[1 << 16];
	ssize_t n;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			break;
	close(in);
	close(out);
}

/*
 * The page_pinner scenario: page_pinner events are traced since boot (kernel command line);
 * here page_ref events join for the CMA area, a CMA allocation over the area fails on the
 * pinned pages, compaction fails on every pinned page, and the pins of release[] are let go.
 */
static void pinner_phase(unsigned long cma_base, unsigned long cma_pages, int (*release)[2],
			 int nrelease)
{
	char dir[320] = "", path[400], buf[128];
	if (mount("tracefs", TRACING, "tracefs", 0, NULL) < 0 && errno != EBUSY)
		printf("PINLOG mount tracefs: %s\n", strerror(errno));
	snprintf(buf, sizeof(buf), "pfn >= %lu && pfn < %lu", cma_base, cma_base + cma_pages);
	write_file(TRACING "/events/page_ref/filter", buf);
	write_file(TRACING "/events/page_ref/enable", "1");
	write_file(TRACING "/tracing_on", "1");
	int alloc_rc = 1;
	long used = -1;
	if (cma_debugfs(dir, sizeof(dir)) == 0) {
		snprintf(path, sizeof(path), "%s/used", dir);
		used = read_long(path);
		snprintf(path, sizeof(path), "%s/alloc", dir);
		snprintf(buf, sizeof(buf), "%lu", cma_pages);
		alloc_rc = write_status(path, buf);
		if (alloc_rc == 0) { /* it should have failed: give the area back */
			snprintf(path, sizeof(path), "%s/free", dir);
			write_file(path, buf);
		}
	} else {
		printf("PINLOG no /sys/kernel/debug/cma/<area>\n");
	}
	write_file("/proc/sys/vm/compact_memory", "1");
	for (int i = 0; i < nrelease; i++) {
		close(release[i][0]);
		close(release[i][1]);
	}
	usleep(200000);
	write_file(TRACING "/tracing_on", "0");
	write_file(TRACING "/events/page_ref/enable", "0");
	printf("PINLOG pinner cma_area %s used_before %ld alloc_rc %d\n", dir, used, alloc_rc);
	/* the trace text to the 9p share "out" (custom kernels), for the host */
	mkdir("/tmp/out", 0755);
	if (mount("out", "/tmp/out", "9p", 0, "trans=virtio,version=9p2000.L") < 0) {
		printf("PINLOG mount 9p out: %s\n", strerror(errno));
		return;
	}
	copy_file(TRACING "/trace", "/tmp/out/trace.txt");
	copy_file(TRACING "/per_cpu/cpu0/stats", "/tmp/out/trace-stats-cpu0.txt");
	copy_file(TRACING "/per_cpu/cpu1/stats", "/tmp/out/trace-stats-cpu1.txt");
	sync();
	umount("/tmp/out");
}

/* ---- KSM: pages merged by ksmd, mapped by two processes ---- */

#define KSM_DIR "/sys/kernel/mm/ksm/"
#define KSM_PAGES 4       /* merged pages; the first KSM_PINNED of them spliced into a pipe */
#define KSM_PINNED 2
#define KSM_WAIT_MS 300000 /* ksmd's bound; measured under TCG: see PINLOG ksm */
#define KPF_KSM 21

static pid_t ksm_child;
static char *ksm_child_addr; /* the child's region (its own mapping, same content) */
static char *ksm_addr;       /* this process's region */
static char ksm_meta[512] = ",\"ksm\":{\"state\":\"absent\"}";

/* The content of KSM page i: the same in both processes, unique to this run and to i (so that
 * ksmd merges exactly the two copies of each page, and nothing else in the system). */
static void ksm_fill(char *m, pid_t parent)
{
	for (int i = 0; i < KSM_PAGES; i++) {
		memset(m + i * PAGE, 0x40 + i, PAGE);
		snprintf(m + i * PAGE, 64, "pinwork ksm page %d of pid %d", i, (int)parent);
	}
}

static void *ksm_region(void)
{
	char *m = map(KSM_PAGES * PAGE, MAP_PRIVATE | MAP_ANONYMOUS);
	madvise(m, KSM_PAGES * PAGE, MADV_NOHUGEPAGE);
	return m;
}

/* Before anything else is mapped (a fork shares the parent's private pages copy-on-write): a
 * child with its own region of the KSM content, marked mergeable; it sends its address back. */
static void ksm_fork(void)
{
	if (access(KSM_DIR "run", W_OK) < 0) {
		printf("PINLOG no KSM (%s%s: %s)\n", KSM_DIR, "run", strerror(errno));
		return;
	}
	int p[2];
	if (pipe(p) < 0)
		die("pipe");
	pid_t parent = getpid();
	ksm_child = fork();
	if (ksm_child < 0)
		die("fork");
	if (ksm_child == 0) {
		prctl(PR_SET_NAME, "pinwork-ksm");
		char *m = ksm_region();
		ksm_fill(m, parent);
		if (madvise(m, KSM_PAGES * PAGE, MADV_MERGEABLE) < 0)
			m = NULL;
		if (write(p[1], &m, sizeof(m)) != sizeof(m))
			_exit(1);
		for (;;)
			pause();
	}
	if (read(p[0], &ksm_child_addr, sizeof(ksm_child_addr)) != sizeof(ksm_child_addr))
		die("KSM child");
	close(p[0]);
	close(p[1]);
	if (!ksm_child_addr)
		die("KSM child: madvise(MADV_MERGEABLE) failed");
}

static long ksm_stat(const char *name)
{
	char path[128];
	snprintf(path, sizeof(path), KSM_DIR "%s", name);
	return read_long(path);
}

/* How many of the KSM_PAGES pages both processes map on one KSM pfn (pagemap, kpageflags).
 * The same pfn in two mms for private anonymous pages that were never shared by fork is the
 * proof of the merge: KPF_KSM alone is not (6.12's kpageflags sets it on every anonymous
 * page, fixed by "fs/proc: fix KPF_KSM reported for all anonymous pages"). */
static int ksm_merged(int pm, int pm_child, unsigned long *pfns)
{
	int n = 0;
	for (int i = 0; i < KSM_PAGES; i++) {
		unsigned long long a = pagemap_entry(pm, ksm_addr + i * PAGE);
		unsigned long long b = pagemap_entry(pm_child, ksm_child_addr + i * PAGE);
		unsigned long pa = (unsigned long)(a & ((1ULL << 55) - 1));
		unsigned long pb = (unsigned long)(b & ((1ULL << 55) - 1));
		pfns[i] = pa;
		if ((a >> 63) && (b >> 63) && pa == pb && (kpageflags(pa) >> KPF_KSM & 1))
			n++;
	}
	return n;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/*
 * This process's copy of the KSM content, marked mergeable; ksmd scans fast until both
 * processes map each page on the same KSM pfn (bounded: ground truth says "unmerged" rather
 * than the workload hanging); then KSM_PINNED of the pages are spliced into a pipe that stays
 * open. vmsplice's GUP asks no FOLL_WRITE, so the page stays KSM (checked after the splice: a
 * kernel that breaks COW on every FOLL_GET would have given this process a copy). ksmd is
 * stopped then (run=0 keeps merged pages merged). The pages are recorded (ksm_vmsplice,
 * ksm_control) only when merged and still KSM.
 */
static void ksm_phase(void)
{
	if (!ksm_child)
		return;
	ksm_addr = ksm_region();
	ksm_fill(ksm_addr, getpid());
	if (madvise(ksm_addr, KSM_PAGES * PAGE, MADV_MERGEABLE) < 0)
		die("madvise(MADV_MERGEABLE)");
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)ksm_child);
	int pm = open("/proc/self/pagemap", O_RDONLY), pm_child = open(path, O_RDONLY);
	if (pm < 0 || pm_child < 0)
		die("pagemap");
	long scans0 = ksm_stat("full_scans");
	write_file(KSM_DIR "pages_to_scan", "10000");
	write_file(KSM_DIR "sleep_millisecs", "10");
	write_file(KSM_DIR "run", "1");
	unsigned long pfns[KSM_PAGES];
	double t0 = now_ms(), waited = 0;
	int merged = 0;
	while ((merged = ksm_merged(pm, pm_child, pfns)) < KSM_PAGES &&
	       (waited = now_ms() - t0) < KSM_WAIT_MS)
		usleep(100000);
	waited = now_ms() - t0;
	long scans = ksm_stat("full_scans") - scans0;
	const char *state = merged == KSM_PAGES ? "merged" : "unmerged";
	int pipefd = -1;
	if (merged == KSM_PAGES) {
		int p[2];
		if (pipe(p) < 0)
			die("pipe");
		struct iovec iov = { ksm_addr, KSM_PINNED * PAGE };
		if (vmsplice(p[1], &iov, 1, 0) != (ssize_t)(KSM_PINNED * PAGE))
			die("vmsplice KSM");
		pipefd = p[1];
		unsigned long after[KSM_PAGES];
		if (ksm_merged(pm, pm_child, after) < KSM_PAGES ||
		    memcmp(after, pfns, sizeof(after)))
			state = "unshared_by_pin";
	}
	write_file(KSM_DIR "run", "0");
	printf("PINLOG ksm %s after %.0f ms, %ld full scans, %d of %d pages merged, "
	       "pages_shared %ld pages_sharing %ld\n", state, waited, scans, merged, KSM_PAGES,
	       ksm_stat("pages_shared"), ksm_stat("pages_sharing"));
	snprintf(ksm_meta, sizeof(ksm_meta),
		 ",\"ksm\":{\"state\":\"%s\",\"ms\":%.0f,\"full_scans\":%ld,\"merged\":%d,"
		 "\"pages\":%d,\"child_pid\":%d,\"child_comm\":\"pinwork-ksm\",\"pipe_fd\":%d}",
		 state, waited, scans, merged, KSM_PAGES, (int)ksm_child, pipefd);
	close(pm);
	close(pm_child);
	if (strcmp(state, "merged"))
		return;
	for (int i = 0; i < KSM_PAGES; i++)
		add(i < KSM_PINNED ? "ksm_vmsplice" : "ksm_control", i < KSM_PINNED ? "vmsplice" : "none",
		    "ksm", ksm_addr + i * PAGE, 0, i < KSM_PINNED, 2, 1);
}

/* ---- the workload ---- */

static int peer_pipe[2];

int main(int argc, char **argv)
{
	int want_cma = 0, want_owner = 0, no_drain = 0, compact_only = 0, want_pinmod = 0;
	int want_pinner = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--cma"))
			want_cma = 1;
		else if (!strcmp(argv[i], "--page-owner"))
			want_owner = 1;
		else if (!strcmp(argv[i], "--no-drain")) /* to show that the drain is needed */
			no_drain = 1;
		else if (!strcmp(argv[i], "--compact-only")) /* does compaction drain all CPUs? */
			compact_only = 1;
		else if (!strcmp(argv[i], "--pinmod"))
			want_pinmod = 1;
		else if (!strcmp(argv[i], "--pinner")) /* page_pinner kernel (pp61) */
			want_pinner = 1, want_cma = 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	prctl(PR_SET_NAME, "pinwork");
	/* With two CPUs, fault everything in on CPU 1 and drain from CPU 0: then only a drain of
	 * all CPUs' LRU batches (lru_add_drain_all) gives the exact refcounts the tests expect. */
	ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu >= 2)
		run_on_cpu(1);
	int priv = MAP_PRIVATE | MAP_ANONYMOUS;
	int shared = MAP_SHARED | MAP_ANONYMOUS;

	/* the KSM child first: it must share none of the mappings below */
	ksm_fork();

	/* 0. anonymous shared memory mapped by two processes (parent and a forked peer). Fork first:
	 *    a later fork would also share (COW) the private pages below and change their mapcount. */
	char *sh = map(4 * PAGE, shared);
	touch(sh, 4 * PAGE, 9);
	if (pipe(peer_pipe) < 0)
		die("pipe");
	pid_t peer = fork();
	if (peer == 0) {
		prctl(PR_SET_NAME, "pinwork-peer");
		/* the peer touches the pages so its page tables map them too */
		volatile char sum = 0;
		for (size_t off = 0; off < 4 * PAGE; off += PAGE)
			sum += sh[off];
		(void)sum;
		if (write(peer_pipe[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	char c;
	if (read(peer_pipe[0], &c, 1) != 1)
		die("peer");

	/* 1. anonymous private pages, FOLL_PIN long-term (io_uring fixed buffer), 4 pages */
	char *a = map(4 * PAGE, priv);
	touch(a, 4 * PAGE, 1);
	if (uring_pin(a, 4 * PAGE) < 0)
		die("io_uring register anon");
	add_range("anon_uring", "io_uring_fixed", "anon", a, 4 * PAGE, 1, 0, 1);

	/* 2. one anonymous page pinned by two rings: 2 FOLL_PIN pins */
	char *a2 = map(PAGE, priv);
	touch(a2, PAGE, 2);
	if (uring_pin(a2, PAGE) < 0 || uring_pin(a2, PAGE) < 0)
		die("io_uring register anon x2");
	add("anon_uring_x2", "io_uring_fixed", "anon", a2, 2, 0, 1, 1);

	/* 3. anonymous private pages, FOLL_GET (vmsplice), 4 pages; plus one page spliced twice */
	char *g = map(4 * PAGE, priv);
	touch(g, 4 * PAGE, 3);
	vmsplice_get(g, 4 * PAGE);
	add_range("anon_vmsplice", "vmsplice", "anon", g, 4 * PAGE, 0, 1, 1);
	char *g2 = map(PAGE, priv);
	touch(g2, PAGE, 4);
	vmsplice_get(g2, PAGE);
	vmsplice_get(g2, PAGE);
	add("anon_vmsplice_x2", "vmsplice", "anon", g2, 0, 2, 1, 1);

	/* 4. transparent huge page pinned as a whole folio */
	char *raw = map(2 * HPAGE, priv);
	char *thp = (char *)(((unsigned long)raw + HPAGE - 1) & ~(HPAGE - 1));
	if (madvise(thp, HPAGE, MADV_HUGEPAGE) < 0)
		printf("PINLOG madvise(MADV_HUGEPAGE): %s\n", strerror(errno));
	touch(thp, HPAGE, 5);
	if (uring_pin(thp, HPAGE) < 0)
		die("io_uring register thp");
	add("thp_uring", "io_uring_fixed", "anon", thp, 1, 0, 1, 512);
	/* a second THP, touched only: control */
	char *raw2 = map(2 * HPAGE, priv);
	char *thp2 = (char *)(((unsigned long)raw2 + HPAGE - 1) & ~(HPAGE - 1));
	madvise(thp2, HPAGE, MADV_HUGEPAGE);
	touch(thp2, HPAGE, 6);
	add("thp_control", "none", "anon", thp2, 0, 0, 1, 512);

	/* 5. page of a tmpfs file, mapped, FOLL_PIN (2 pages) and FOLL_GET (1 page) */
	int tf = open("/tmp/pinwork.data", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (tf < 0 || ftruncate(tf, 8 * PAGE) < 0)
		die("tmpfs file");
	char *t = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, tf, 0);
	if (t == MAP_FAILED)
		die("mmap tmpfs");
	touch(t, 8 * PAGE, 7);
	if (uring_pin(t, 2 * PAGE) < 0)
		die("io_uring register tmpfs");
	add_range("tmpfs_uring", "io_uring_fixed", "shmem", t, 2 * PAGE, 1, 0, 1);
	vmsplice_get(t + 2 * PAGE, PAGE);
	add("tmpfs_vmsplice", "vmsplice", "shmem", t + 2 * PAGE, 0, 1, 1, 1);

	/* 6. SysV shared memory: io_uring refuses it on 6.1, so vmsplice (FOLL_GET) */
	int shmid = shmget(IPC_PRIVATE, 4 * PAGE, IPC_CREAT | 0600);
	if (shmid < 0)
		die("shmget");
	char *s = shmat(shmid, NULL, 0);
	if (s == (void *)-1)
		die("shmat");
	touch(s, 4 * PAGE, 8);
	vmsplice_get(s, 2 * PAGE);
	add_range("sysv_vmsplice", "vmsplice", "shmem", s, 2 * PAGE, 0, 1, 1);

	/* 7. anonymous shared memory mapped by two processes: pinned below */
	if (uring_pin(sh, PAGE) < 0)
		die("io_uring register shared anon");
	add("shared_anon_uring", "io_uring_fixed", "shmem", sh, 1, 0, 2, 1);
	vmsplice_get(sh + PAGE, PAGE);
	add("shared_anon_vmsplice", "vmsplice", "shmem", sh + PAGE, 0, 1, 2, 1);

	/* 8. control pages: touched, never pinned */
	char *ctl = map(4 * PAGE, priv);
	touch(ctl, 4 * PAGE, 10);
	add_range("anon_control", "none", "anon", ctl, 4 * PAGE, 0, 0, 1);
	add_range("tmpfs_control", "none", "shmem", t + 4 * PAGE, 2 * PAGE, 0, 0, 1);
	add_range("sysv_control", "none", "shmem", s + 2 * PAGE, 2 * PAGE, 0, 0, 1);
	add_range("shared_anon_control", "none", "shmem", sh + 2 * PAGE, 2 * PAGE, 0, 0, 2);

	/* 9. KSM pages mapped by this process and the KSM child, two of them spliced */
	ksm_phase();

	int pinmod = want_pinmod && pinmod_start();

	if (!no_drain)
		compact();

	/* 9. pins inside the CMA area (custom kernel): movable allocations fall back to CMA when
	 *    free non-CMA memory runs low, so fault in memory until enough pages land in the area,
	 *    keep those and unmap the rest, then FOLL_GET them (FOLL_LONGTERM would migrate them
	 *    out of the area first). */
	unsigned long cma_base = 0, cma_pages = 0;
	int cma_found = 0;
	/* --pinner: 6 pinned and 3 released pages now; the 2 control pages are chosen after the
	 * failing allocation, which migrates every unpinned page out of the area */
	const int cma_want = want_pinner ? 9 : 8;
	int released[3][2];
	int nreleased = 0;
	if (want_cma) {
		if (cma_range(&cma_base, &cma_pages) < 0)
			die("no CMA area in the kernel log");
		printf("PINLOG cma base_pfn %lu pages %lu\n", cma_base, cma_pages);
		char *cma_pg[9];
		cma_debugfs_allocs(cma_base, cma_pages, priv);
		cma_found = find_cma_pages(cma_base, cma_pages, cma_pg, cma_want, priv);
		printf("PINLOG cma pages found %d\n", cma_found);
		if (cma_found < cma_want)
			die("only %d pages landed in CMA", cma_found);
		for (int i = 0; i < 6; i++) {
			vmsplice_get(cma_pg[i], PAGE);
			add("cma_vmsplice", "vmsplice", "anon", cma_pg[i], 0, 1, 1, 1);
		}
		for (int i = 6; i < 8 && !want_pinner; i++)
			add("cma_control", "none", "anon", cma_pg[i], 0, 0, 1, 1);
		/* --pinner: pinned like cma_vmsplice, released while the events are traced */
		for (int i = 6; i < cma_want && want_pinner; i++) {
			int *p = released[nreleased++];
			if (pipe(p) < 0)
				die("pipe");
			struct iovec iov = { cma_pg[i], PAGE };
			if (vmsplice(p[1], &iov, 1, 0) != (ssize_t)PAGE)
				die("vmsplice");
			add("cma_released", "none", "anon", cma_pg[i], 0, 0, 1, 1);
		}
	}

	/* drain per-CPU LRU batches (from CPU 0), then read pagemap */
	if (ncpu >= 2)
		run_on_cpu(0);
	if (!no_drain && !compact_only)
		drain();
	if (want_pinner) {
		/* the pfns before the allocation (which migrates what it can) */
		int pm0 = open("/proc/self/pagemap", O_RDONLY);
		printf("PINLOG pinner {\"kept\":[");
		for (int i = 0, n = 0; i < nrec; i++)
			if (!strcmp(recs[i].kind, "cma_vmsplice"))
				printf("%s%lu", n++ ? "," : "", pfn_of(pm0, recs[i].vaddr));
		printf("],\"released\":[");
		for (int i = 0, n = 0; i < nrec; i++)
			if (!strcmp(recs[i].kind, "cma_released"))
				printf("%s%lu", n++ ? "," : "", pfn_of(pm0, recs[i].vaddr));
		printf("],\"cma_base_pfn\":%lu,\"cma_pages\":%lu}\n", cma_base, cma_pages);
		close(pm0);
		pinner_phase(cma_base, cma_pages, released, nreleased);
		char *ctl_pg[2];
		if (find_cma_pages(cma_base, cma_pages, ctl_pg, 2, priv) < 2)
			die("no CMA control pages after the allocation");
		for (int i = 0; i < 2; i++)
			add("cma_control", "none", "anon", ctl_pg[i], 0, 0, 1, 1);
		if (!no_drain && !compact_only)
			drain(); /* the control pages' LRU batch references */
	}
	int pm = open("/proc/self/pagemap", O_RDONLY);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)peer);
	int pm_peer = open(path, O_RDONLY);
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)ksm_child);
	int pm_ksm = ksm_child ? open(path, O_RDONLY) : -1;
	if (pm < 0 || pm_peer < 0 || (ksm_child && pm_ksm < 0))
		die("pagemap");
	for (int i = 0; i < nrec; i++) {
		recs[i].pfn = pfn_of(pm, recs[i].vaddr);
		recs[i].pm = pagemap_entry(pm, recs[i].vaddr);
	}
	printf("PINLOG cpus %d\n", ncpu);
	printf("PINMETA {\"pid\":%d,\"peer_pid\":%d,\"comm\":\"pinwork\",\"peer_comm\":\"pinwork-peer\""
	       ",\"cma_base_pfn\":%lu,\"cma_pages\":%lu%s%s}\n",
	       (int)getpid(), (int)peer, cma_base, cma_pages, cma_debugfs_meta, ksm_meta);
	for (int i = 0; i < nrec; i++) {
		struct rec *r = &recs[i];
		unsigned long long kf = kpageflags(r->pfn);
		unsigned long peer_pfn = 0;
		if (r->mapcount == 2 && r->vaddr >= (void *)sh && r->vaddr < (void *)(sh + 4 * PAGE))
			peer_pfn = pfn_of(pm_peer, r->vaddr);
		/* KSM pages: the child maps the same pfn at its own address; both are mappers */
		char mappers[256] = "";
		if (!strcmp(r->mapping, "ksm")) {
			char *cv = ksm_child_addr + ((char *)r->vaddr - ksm_addr);
			peer_pfn = pfn_of(pm_ksm, cv);
			snprintf(mappers, sizeof(mappers),
				 ",\"mappers\":[{\"pid\":%d,\"comm\":\"pinwork\",\"vaddr\":%lu},"
				 "{\"pid\":%d,\"comm\":\"pinwork-ksm\",\"vaddr\":%lu}]",
				 r->pid, (unsigned long)r->vaddr, (int)ksm_child, (unsigned long)cv);
		}
		printf("PINGT {\"kind\":\"%s\",\"method\":\"%s\",\"mapping\":\"%s\",\"pid\":%d,"
		       "\"comm\":\"pinwork\",\"vaddr\":%lu,\"pfn\":%lu,\"nr_pages\":%d,\"pinned\":%s,"
		       "\"pins\":%d,\"gets\":%d,\"mapcount\":%d,\"kpageflags\":%llu,\"peer_pfn\":%lu"
		       "%s}\n",
		       r->kind, r->method, r->mapping, r->pid, (unsigned long)r->vaddr, r->pfn,
		       r->nr_pages, r->pinned ? "true" : "false", r->pins, r->gets, r->mapcount, kf,
		       peer_pfn, mappers);
	}
	if (want_owner) {
		const char *want[] = { "anon_uring", "anon_vmsplice", "thp_uring", "cma_vmsplice",
				       "tmpfs_uring" };
		for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++)
			for (int i = 0; i < nrec; i++)
				if (!strcmp(recs[i].kind, want[w])) {
					print_page_owner(recs[i].pfn);
					break;
				}
	}
	if (pinmod)
		pinmod_report(want_owner);
	printf("PINSPECT-READY\n");
	fflush(stdout);
	for (;;)
		pause();
}
