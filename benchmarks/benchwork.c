/*
 * benchwork: the benchmark's guest workload (many processes, many pinned pages).
 *
 * Usage: benchwork PROCS PAGES
 *
 * Forks PROCS processes; each maps PAGES small pages (MADV_NOHUGEPAGE), touches them and pins
 * them in two ways the kernel really uses:
 *   - the first half with an io_uring registered (fixed) buffer: FOLL_PIN | FOLL_LONGTERM;
 *     every fifth process maps that half from a memfd (shmem, a file mapping) instead of
 *     anonymous memory, so that the reverse map walks address_space trees too;
 *   - the second half with vmsplice() into pipes that nobody reads (1 MiB each): one FOLL_GET
 *     reference per page.
 * Each process names itself "bench-NN" and then waits forever, holding the pins. The parent
 * waits until every child has pinned its pages, prints one line
 *   BENCH-READY procs P pages N pinned T
 * and exits (the children stay, reparented to init). A failure prints "BENCH-ERR ..." and the
 * parent exits with status 1.
 *
 * Built with gcc -static; raw syscalls only. Separate from tests/realkernel/pinwork.c so that
 * the real-kernel tier's workload is not changed by the benchmark.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#define PIPE_BYTES (1UL << 20)

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#define __NR_io_uring_register 427
#endif
#define IORING_REGISTER_BUFFERS 0

struct uring_params { /* struct io_uring_params of the kernel ABI (120 bytes) */
	uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd;
	uint32_t resv[3];
	uint64_t sq_off[5];
	uint64_t cq_off[5];
};

static int fail(const char *what, int proc)
{
	printf("BENCH-ERR proc %d: %s (errno %d %s)\n", proc, what, errno, strerror(errno));
	fflush(stdout);
	return -1;
}

static int child(int proc, size_t pages)
{
	char name[24];
	snprintf(name, sizeof(name), "bench-%02d", proc);
	prctl(PR_SET_NAME, name); /* truncated to 15 bytes by the kernel */
	size_t half = pages / 2, len1 = half * PAGE, len2 = (pages - half) * PAGE;

	char *a;
	if (proc % 5 == 4) {
		int mfd = (int)syscall(SYS_memfd_create, name, 0);
		if (mfd < 0 || ftruncate(mfd, (off_t)len1) < 0)
			return fail("memfd", proc);
		a = mmap(NULL, len1, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	} else {
		a = mmap(NULL, len1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	char *b = mmap(NULL, len2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED)
		return fail("mmap", proc);
	madvise(a, len1, MADV_NOHUGEPAGE);
	madvise(b, len2, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < len1; i += PAGE)
		a[i] = (char)(proc + 1);
	for (size_t i = 0; i < len2; i += PAGE)
		b[i] = (char)(proc + 1);

	struct uring_params p;
	memset(&p, 0, sizeof(p));
	int ring = (int)syscall(__NR_io_uring_setup, 4, &p);
	if (ring < 0)
		return fail("io_uring_setup", proc);
	struct iovec iov = { a, len1 };
	if (syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iov, 1) < 0)
		return fail("io_uring_register", proc);

	for (size_t off = 0; off < len2; off += PIPE_BYTES) {
		size_t n = len2 - off < PIPE_BYTES ? len2 - off : PIPE_BYTES;
		int fds[2];
		if (pipe(fds) < 0)
			return fail("pipe", proc);
		if (fcntl(fds[1], F_SETPIPE_SZ, (int)PIPE_BYTES) < 0)
			return fail("F_SETPIPE_SZ", proc);
		struct iovec v = { b + off, n };
		if (vmsplice(fds[1], &v, 1, 0) != (ssize_t)n)
			return fail("vmsplice", proc);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: benchwork PROCS PAGES\n");
		return 2;
	}
	int procs = atoi(argv[1]);
	size_t pages = (size_t)atol(argv[2]);
	int ready[2];
	if (pipe(ready) < 0)
		return fail("pipe", -1), 1;
	for (int i = 0; i < procs; i++) {
		pid_t pid = fork();
		if (pid < 0)
			return fail("fork", i), 1;
		if (pid == 0) {
			close(ready[0]);
			char c = child(i, pages) == 0 ? 'y' : 'n';
			if (write(ready[1], &c, 1) != 1)
				_exit(1);
			close(ready[1]);
			for (;;)
				pause();
		}
	}
	close(ready[1]);
	int ok = 0, bad = 0;
	char c;
	while (ok + bad < procs && read(ready[0], &c, 1) == 1)
		c == 'y' ? ok++ : bad++;
	if (ok != procs) {
		printf("BENCH-ERR %d of %d processes failed\n", procs - ok, procs);
		return 1;
	}
	printf("BENCH-READY procs %d pages %zu pinned %zu\n", procs, pages, (size_t)procs * pages);
	fflush(stdout);
	return 0;
}
