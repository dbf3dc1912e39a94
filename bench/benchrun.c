/*
 * benchrun: runs one client under measurement.
 *
 *   benchrun [-n LINES] [-t SECONDS] [-L] [-s FILE] -- command [args...]
 *
 * Starts the command with its stdout on a pipe, reads that pipe and throws
 * the bytes away, counting '\n'. When LINES lines have arrived it sends the
 * command SIGTERM (a client that exits by itself after LINES events is fine
 * too), keeps draining until end of file, then collects the command's
 * resource usage from wait4(): user and system CPU seconds and peak RSS as
 * the kernel accounted them. With -n 0 it only waits for the command to
 * exit (a client that reports on its own, such as bench/floor).
 *
 * -L (latency): every line is searched for "PubUs" followed by a number,
 * the CLOCK_REALTIME microsecond at which the event was published; the
 * time the line was read minus that is its latency. p50, p99 and max are
 * reported.
 * -s FILE keeps the first line read, as a sample of the client's output.
 * -t SECONDS bounds the whole run: past it the command gets SIGTERM, then
 * SIGKILL 5 s later, and the report says timeout=1.
 *
 * Prints one line of key=value pairs on stdout:
 *   lines (counted up to the signal) lines_total (up to end of file)
 *   wall_s (start to the LINES-th line, or to exit with -n 0)
 *   first_s (start to the first line) user_s sys_s maxrss_kb
 *   anon_peak_kb (the largest RssAnon of /proc/<pid>/status, read every
 *   10 ms: the client's own memory, without the pages of the shared
 *   libraries and of its executable that maxrss counts too; a sample, so
 *   a peak shorter than 10 ms can be missed)
 *   status (exit code, or 128+signal) timeout
 *   and with -L: lat_n lat_p50_us lat_p99_us lat_max_us
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

/* wait4() is BSD/GNU, not POSIX; declared here rather than pulling in
 * _DEFAULT_SOURCE for the whole file. */
pid_t wait4(pid_t pid, int *status, int options, struct rusage *rusage);

#define READ_SIZE (256 * 1024)
#define LINE_MAX_KEEP (1024 * 1024)

/* Set by SIGTERM or SIGINT to benchrun itself: the client is stopped too,
 * so that stopping the harness never leaves a client behind. */
static volatile sig_atomic_t stop_requested;

static void
on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct opts {
	uint64_t lines;
	double timeout_s;
	int latency;
	const char *sample;
	char **argv;
};

struct run {
	uint64_t lines;
	double start, nth_at, first_at;
	/* latency mode: the line being assembled */
	char *line;
	size_t line_len, line_cap;
	int line_overflow;
	struct bench_samples lat;
	FILE *sample;
	int sample_done;
};

static double
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t
real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
usage(void)
{
	fprintf(stderr, "usage: benchrun [-n LINES] [-t SECONDS] [-L] "
			"[-s FILE] -- command [args...]\n");
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	o->timeout_s = 600;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		char *end;

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strcmp(a, "-L") == 0) {
			o->latency = 1;
		} else if (strcmp(a, "-n") == 0 && i + 1 < argc) {
			errno = 0;
			o->lines = strtoull(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0')
				return -1;
		} else if (strcmp(a, "-t") == 0 && i + 1 < argc) {
			o->timeout_s = strtod(argv[++i], &end);
			if (*end != '\0' || o->timeout_s <= 0)
				return -1;
		} else if (strcmp(a, "-s") == 0 && i + 1 < argc) {
			o->sample = argv[++i];
		} else {
			return -1;
		}
	}
	if (i >= argc)
		return -1;
	o->argv = argv + i;
	return 0;
}

/* The number after "PubUs" in line (skipping '"', ':', '=', ' '), or -1. */
static int64_t
find_pub_us(const char *line, size_t len)
{
	static const char key[] = "PubUs";
	size_t k = sizeof(key) - 1, i;

	for (i = 0; i + k <= len; i++) {
		size_t j = i + k;
		int64_t v = 0;
		int digits = 0;

		if (memcmp(line + i, key, k) != 0)
			continue;
		while (j < len && (line[j] == '"' || line[j] == ':' ||
				   line[j] == '=' || line[j] == ' '))
			j++;
		while (j < len && line[j] >= '0' && line[j] <= '9' &&
		       digits < 18) {
			v = v * 10 + (line[j] - '0');
			j++;
			digits++;
		}
		if (digits > 0)
			return v;
	}
	return -1;
}

static void
line_done(struct run *r, int64_t now_us)
{
	int64_t pub;

	if (!r->line_overflow) {
		pub = find_pub_us(r->line, r->line_len);
		if (pub > 0)
			bench_samples_add(&r->lat, now_us - pub);
	}
	r->line_len = 0;
	r->line_overflow = 0;
}

/* Latency mode: assemble lines, time-stamping each when its end arrives. */
static void
feed_lines(struct run *r, const char *p, size_t n, int64_t now_us)
{
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl != NULL ? (size_t)(nl - p) : n;

		if (!r->line_overflow) {
			if (r->line_len + take > LINE_MAX_KEEP) {
				r->line_overflow = 1;
			} else {
				if (r->line_len + take > r->line_cap) {
					size_t cap = (r->line_len + take) * 2;
					char *q = realloc(r->line, cap);

					if (q == NULL) {
						r->line_overflow = 1;
					} else {
						r->line = q;
						r->line_cap = cap;
					}
				}
				if (!r->line_overflow) {
					memcpy(r->line + r->line_len, p, take);
					r->line_len += take;
				}
			}
		}
		if (nl == NULL)
			return;
		line_done(r, now_us);
		p += take + 1;
		n -= take + 1;
	}
}

static void
keep_sample(struct run *r, const char *p, size_t n)
{
	const char *nl;

	if (r->sample == NULL || r->sample_done)
		return;
	nl = memchr(p, '\n', n);
	fwrite(p, 1, nl != NULL ? (size_t)(nl - p) + 1 : n, r->sample);
	if (nl != NULL) {
		r->sample_done = 1;
		fclose(r->sample);
		r->sample = NULL;
	}
}

/* RssAnon of a /proc/<pid>/status file, in kB; 0 when unreadable (the
 * process is gone). */
static long
rss_anon_kb(const char *path)
{
	char line[256];
	long kb = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "RssAnon: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct run r;
	struct rusage ru;
	int fds[2], status = 0, signalled = 0, timed_out = 0, reaped = 0;
	double deadline, kill_at = 0, next_sample = 0;
	uint64_t total = 0;
	pid_t pid;
	char *buf, status_path[64];
	long anon_peak_kb = 0;

	if (parse_opts(argc, argv, &o) != 0) {
		usage();
		return 64;
	}
	memset(&r, 0, sizeof(r));
	if (o.sample != NULL) {
		r.sample = fopen(o.sample, "w");
		if (r.sample == NULL) {
			perror(o.sample);
			return 1;
		}
	}
	buf = malloc(READ_SIZE);
	if (buf == NULL || pipe(fds) != 0) {
		perror("benchrun");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_stop;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
	}
	r.start = mono_s();
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		signal(SIGPIPE, SIG_DFL);
		execvp(o.argv[0], o.argv);
		fprintf(stderr, "benchrun: cannot run %s: %s\n", o.argv[0],
			strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	deadline = r.start + o.timeout_s;
	snprintf(status_path, sizeof(status_path), "/proc/%ld/status",
		 (long)pid);

	for (;;) {
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		double now = mono_s();
		int ms;
		ssize_t got;

		if ((now >= deadline || stop_requested) && !timed_out) {
			timed_out = 1;
			kill(pid, SIGTERM);
			kill_at = now + 5;
		}
		if (kill_at > 0 && now >= kill_at) {
			kill(pid, SIGKILL);
			kill_at = 0;
		}
		if (now >= next_sample) {
			long kb = rss_anon_kb(status_path);

			if (kb > anon_peak_kb)
				anon_peak_kb = kb;
			next_sample = now + 0.01;
		}
		/* Deadlines are coarse; data wakes poll at once. */
		ms = 10;
		if (poll(&pfd, 1, ms) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			break;
		}
		if (pfd.revents == 0)
			continue;
		got = read(fds[0], buf, READ_SIZE);
		if (got < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			perror("read");
			break;
		}
		if (got == 0)
			break;
		keep_sample(&r, buf, (size_t)got);
		if (o.latency)
			feed_lines(&r, buf, (size_t)got, real_us());
		{
			const char *p = buf, *end = buf + got;
			uint64_t before = total;

			while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
				p++;
				total++;
				if (o.lines > 0 && total == o.lines) {
					r.nth_at = mono_s();
					r.lines = total;
					if (!signalled && !timed_out) {
						kill(pid, SIGTERM);
						signalled = 1;
						/* A client that ignores SIGTERM
						 * still ends, a bit later. */
						kill_at = r.nth_at + 30;
					}
				}
			}
			if (before == 0 && total > 0)
				r.first_at = mono_s();
		}
	}
	close(fds[0]);
	/* End of file: the command closed stdout, normally by exiting. */
	for (;;) {
		pid_t w = wait4(pid, &status, WNOHANG, &ru);

		if (w == pid) {
			reaped = 1;
			break;
		}
		if (w < 0 && errno != EINTR)
			break;
		if (mono_s() >= deadline + 10) {
			kill(pid, SIGKILL);
			if (wait4(pid, &status, 0, &ru) == pid)
				reaped = 1;
			timed_out = 1;
			break;
		}
		{
			struct timespec ts = {0, 2000000};

			nanosleep(&ts, NULL);
		}
	}
	if (r.lines == 0)
		r.lines = total;
	if (o.lines == 0 || r.nth_at == 0)
		r.nth_at = mono_s();
	if (!reaped)
		memset(&ru, 0, sizeof(ru));

	printf("lines=%" PRIu64 " lines_total=%" PRIu64
	       " wall_s=%.4f first_s=%.4f user_s=%.4f sys_s=%.4f "
	       "maxrss_kb=%ld anon_peak_kb=%ld status=%d timeout=%d",
	       r.lines, total, r.nth_at - r.start,
	       r.first_at > 0 ? r.first_at - r.start : 0.0,
	       (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
	       ru.ru_maxrss, anon_peak_kb,
	       WIFEXITED(status)     ? WEXITSTATUS(status)
	       : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
				     : -1,
	       timed_out);
	if (o.latency) {
		printf(" lat_n=%zu lat_p50_us=%" PRId64 " lat_p99_us=%" PRId64
		       " lat_max_us=%" PRId64,
		       r.lat.n, bench_samples_pct(&r.lat, 50),
		       bench_samples_pct(&r.lat, 99), bench_samples_max(&r.lat));
	}
	printf("\n");
	if (r.sample != NULL)
		fclose(r.sample);
	bench_samples_free(&r.lat);
	free(r.line);
	free(buf);
	return timed_out ? 2 : 0;
}
