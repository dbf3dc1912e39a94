/* Test helpers (see harness.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

long long
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

char *
harness_tmpdir(const char *name)
{
	const char *base = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/sfrelay-%s-XXXXXX",
		 base != NULL && *base != '\0' ? base : "/tmp", name);
	if (mkdtemp(path) == NULL)
		return NULL;
	return strdup(path);
}

void
harness_rmdir(const char *dir, int keep)
{
	if (dir == NULL)
		return;
	if (keep) {
		fprintf(stderr, "# logs kept in %s\n", dir);
		return;
	}
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	char path[4096];
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

const char *
harness_bin(const char *name, char *buf, size_t len)
{
	const char *b = getenv("B");
	snprintf(buf, len, "%s/%s", b != NULL && *b != '\0' ? b : "build",
		 name);
	return buf;
}

static void
redirect(const char *path, int fd, int flags)
{
	int f = open(path != NULL ? path : "/dev/null", flags, 0600);
	if (f >= 0) {
		dup2(f, fd);
		close(f);
	}
}

/*
 * With VALGRIND_RELAY=1 the relay runs under valgrind: any memory error or
 * definite leak turns into exit status 99, which the tests' exit status
 * checks catch.
 */
static const char *const valgrind_argv[] = {
	"/usr/bin/valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
	"--errors-for-leak-kinds=definite,indirect",
	"--show-leak-kinds=definite,indirect",
};
#define VALGRIND_ARGC (sizeof(valgrind_argv) / sizeof(valgrind_argv[0]))

static int
wants_valgrind(const char *bin)
{
	const char *v = getenv("VALGRIND_RELAY");
	size_t n = strlen(bin);
	return v != NULL && strcmp(v, "1") == 0 && n >= 8 &&
	       strcmp(bin + n - 8, "/sfrelay") == 0;
}

int
proc_start(struct proc *p, const char *const *argv, const char *const *env,
	   const char *stdout_path, const char *stderr_path)
{
	const char *wrapped[64];
	if (wants_valgrind(argv[0])) {
		size_t n = 0;
		for (size_t i = 0; i < VALGRIND_ARGC; i++)
			wrapped[n++] = valgrind_argv[i];
		for (size_t i = 0; argv[i] != NULL && n < 63; i++)
			wrapped[n++] = argv[i];
		wrapped[n] = NULL;
		argv = wrapped;
	}
	int fds[2] = {-1, -1};
	memset(p, 0, sizeof(*p));
	p->out_fd = -1;
	if (stdout_path == NULL && pipe(fds) != 0)
		return -1;
	/* Build the child's environment before fork. */
	size_t n = 0;
	while (env != NULL && env[n] != NULL)
		n++;
	const char **envp = calloc(n + 2, sizeof(char *));
	if (envp == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		envp[i] = env[i];
	envp[n] = "PATH=/usr/local/bin:/usr/bin:/bin";
	pid_t pid = fork();
	if (pid < 0) {
		free(envp);
		return -1;
	}
	if (pid == 0) {
		if (stdout_path == NULL) {
			dup2(fds[1], STDOUT_FILENO);
			close(fds[0]);
			close(fds[1]);
		} else {
			redirect(stdout_path, STDOUT_FILENO,
				 O_WRONLY | O_CREAT | O_APPEND);
		}
		redirect(stderr_path, STDERR_FILENO,
			 O_WRONLY | O_CREAT | O_APPEND);
		/* execve's prototype predates const; it does not write. */
		char *const *av, *const *ev;
		memcpy(&av, &argv, sizeof(av));
		memcpy(&ev, &envp, sizeof(ev));
		execve(argv[0], av, ev);
		_exit(127);
	}
	free(envp);
	p->pid = pid;
	if (stdout_path == NULL) {
		close(fds[1]);
		p->out_fd = fds[0];
	}
	return 0;
}

int
proc_read_line(struct proc *p, char *line, size_t len, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	for (;;) {
		char *nl = memchr(p->buf, '\n', p->buf_len);
		if (nl != NULL) {
			size_t l = (size_t)(nl - p->buf);
			size_t c = l < len - 1 ? l : len - 1;
			memcpy(line, p->buf, c);
			line[c] = '\0';
			memmove(p->buf, nl + 1, p->buf_len - l - 1);
			p->buf_len -= l + 1;
			return 0;
		}
		long long left = deadline - now_ms();
		if (left <= 0 || p->out_fd < 0 || p->buf_len == sizeof(p->buf))
			return -1;
		struct pollfd pfd = {.fd = p->out_fd, .events = POLLIN};
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		ssize_t r = read(p->out_fd, p->buf + p->buf_len,
				 sizeof(p->buf) - p->buf_len);
		if (r <= 0)
			return -1;
		p->buf_len += (size_t)r;
	}
}

static int
decode_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

int
proc_wait(struct proc *p, int timeout_ms)
{
	if (p->pid <= 0)
		return -1;
	long long deadline = now_ms() + timeout_ms;
	int st = 0;
	for (;;) {
		pid_t r = waitpid(p->pid, &st, WNOHANG);
		if (r == p->pid)
			break;
		if (now_ms() >= deadline) {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &st, 0);
			p->pid = 0;
			if (p->out_fd >= 0)
				close(p->out_fd);
			p->out_fd = -1;
			return -1;
		}
		sleep_ms(10);
	}
	p->pid = 0;
	if (p->out_fd >= 0)
		close(p->out_fd);
	p->out_fd = -1;
	return decode_status(st);
}

int
proc_stop(struct proc *p, int sig, int timeout_ms)
{
	if (p->pid <= 0)
		return -1;
	kill(p->pid, sig);
	return proc_wait(p, timeout_ms);
}

void
harness_finish(struct proc *relay, struct proc *mock, char *dir, int keep)
{
	if (relay->pid > 0)
		proc_stop(relay, SIGKILL, 5000);
	if (mock->pid > 0)
		proc_stop(mock, SIGTERM, 5000);
	harness_rmdir(dir, keep);
	free(dir);
}

int
e2e_fixture_init(struct e2e_fixture *f, const char *name)
{
	memset(f, 0, sizeof(*f));
	f->dir = harness_tmpdir(name);
	if (f->dir == NULL)
		return -1;
	snprintf(f->out, sizeof(f->out), "%s/relay.out", f->dir);
	snprintf(f->err, sizeof(f->err), "%s/relay.err", f->dir);
	snprintf(f->ckpt, sizeof(f->ckpt), "%s/state/checkpoints.json",
		 f->dir);
	return 0;
}

int
e2e_setup(void **state, const char *name)
{
	struct e2e_fixture *f = malloc(sizeof(*f));
	if (f == NULL)
		return -1;
	if (e2e_fixture_init(f, name) != 0) {
		free(f);
		return -1;
	}
	f->param = *state;
	*state = f;
	return 0;
}

int
e2e_teardown(void **state)
{
	struct e2e_fixture *f = *state;
	harness_finish(&f->relay, &f->mock, f->dir, !f->ok);
	free(f);
	return 0;
}

int
sfmock_start(struct proc *p, const char *dir, const char *const *flags)
{
	char bin[512], log[4096];
	harness_bin("sfmock", bin, sizeof(bin));
	snprintf(log, sizeof(log), "%s/sfmock.log", dir);
	const char *argv[64] = {bin, "--port", "0"};
	size_t n = 3;
	for (size_t i = 0; flags != NULL && flags[i] != NULL && n < 63; i++)
		argv[n++] = flags[i];
	argv[n] = NULL;
	if (proc_start(p, argv, NULL, NULL, log) != 0)
		return -1;
	char line[256];
	int port = -1;
	if (proc_read_line(p, line, sizeof(line), 10000) == 0)
		sscanf(line, "sfmock listening on http://127.0.0.1:%d", &port);
	if (port <= 0)
		proc_stop(p, SIGKILL, 2000);
	return port;
}

struct body {
	char *buf;
	size_t len, cap;
};

static size_t
collect(char *data, size_t size, size_t nmemb, void *userp)
{
	struct body *b = userp;
	size_t n = size * nmemb;
	size_t room = b->cap > b->len + 1 ? b->cap - b->len - 1 : 0;
	size_t c = n < room ? n : room;
	memcpy(b->buf + b->len, data, c);
	b->len += c;
	b->buf[b->len] = '\0';
	return n;
}

long
http_call(const char *method, const char *url, const char *const *headers,
	  const char *body, char *resp, size_t resp_len)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hl = NULL;
	char dummy[1];
	struct body b = {resp != NULL ? resp : dummy,
			 0, resp != NULL ? resp_len : sizeof(dummy)};
	b.buf[0] = '\0';
	long status = 0;
	if (c == NULL)
		return 0;
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
		hl = curl_slist_append(hl, headers[i]);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body != NULL)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return status;
}

char *
file_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	size_t r;
	while (buf != NULL && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += r;
		if (cap - n - 1 == 0) {
			char *g = realloc(buf, cap * 2);
			if (g == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = g;
			cap *= 2;
		}
	}
	fclose(f);
	if (buf == NULL)
		return NULL;
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

size_t
file_count_lines(const char *path)
{
	size_t n = 0, len = 0;
	char *s = file_read(path, &len);
	for (size_t i = 0; s != NULL && i < len; i++)
		n += s[i] == '\n';
	free(s);
	return n;
}

int
file_contains(const char *path, const char *needle)
{
	char *s = file_read(path, NULL);
	int found = s != NULL && strstr(s, needle) != NULL;
	free(s);
	return found;
}

int
relay_start(struct proc *p, const char *dir, int port, const char *channels,
	    const char *const *extra)
{
	char bin[512], out[4096], err[4096];
	char url[128], state[4200], chan[4096];
	harness_bin("sfrelay", bin, sizeof(bin));
	snprintf(out, sizeof(out), "%s/relay.out", dir);
	snprintf(err, sizeof(err), "%s/relay.err", dir);
	snprintf(url, sizeof(url), "SFDC_LOGIN_URL=http://127.0.0.1:%d", port);
	snprintf(state, sizeof(state), "SFRELAY_STATE_DIR=%s/state", dir);
	snprintf(chan, sizeof(chan), "SFRELAY_CHANNELS=%s", channels);
	const char *defaults[] = {
		url,
		state,
		chan,
		"SFDC_CLIENT_ID=sfmock-client-id",
		"SFDC_CLIENT_SECRET=sfmock-client-secret",
		"SFDC_USERNAME=relay@sfmock.test",
		"SFDC_PASSWORD=sfmock-password",
		"SFRELAY_LOG_LEVEL=debug",
	};
	const char *env[64];
	size_t n = 0;
	/* config reads the first occurrence of a name: extras go first. */
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 40; i++)
		env[n++] = extra[i];
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		env[n++] = defaults[i];
	env[n] = NULL;
	const char *argv[] = {bin, NULL};
	return proc_start(p, argv, env, out, err);
}

size_t
file_replay_ids(const char *path, const char *channel, long *ids, size_t max)
{
	char *all = file_read(path, NULL), *line, *save = NULL;
	char want[256];
	size_t n = 0;
	snprintf(want, sizeof(want), " channel=%s ", channel);
	for (line = all != NULL ? strtok_r(all, "\n", &save) : NULL;
	     line != NULL; line = strtok_r(NULL, "\n", &save)) {
		const char *r = strstr(line, " replay_id=");
		if (strstr(line, want) == NULL || r == NULL)
			continue;
		if (n < max)
			ids[n] = atol(r + 11);
		n++;
	}
	free(all);
	return n;
}

int
file_count(const char *path, const char *needle)
{
	char *s = file_read(path, NULL);
	int count = 0;
	for (char *q = s; q != NULL && (q = strstr(q, needle)) != NULL; q++)
		count++;
	free(s);
	return count;
}

int
wait_log(const char *dir, const char *needle, int n, int timeout_ms)
{
	char err[4096];
	snprintf(err, sizeof(err), "%s/relay.err", dir);
	for (long long end = now_ms() + timeout_ms; now_ms() < end;
	     sleep_ms(20))
		if (file_count(err, needle) >= n)
			return 0;
	return -1;
}

size_t
wait_lines(const char *dir, size_t n, int timeout_ms)
{
	char out[4096];
	snprintf(out, sizeof(out), "%s/relay.out", dir);
	size_t got = 0;
	for (long long end = now_ms() + timeout_ms;
	     (got = file_count_lines(out)) < n && now_ms() < end; sleep_ms(20))
		;
	return got;
}

long
mock_publish(int port, const char *channel, int count)
{
	char url[1024], enc[512], resp[512];
	size_t o = 0;
	for (const char *c = channel; *c != '\0' && o + 4 < sizeof(enc); c++) {
		if (*c == '/')
			o += (size_t)snprintf(enc + o, sizeof(enc) - o, "%%2F");
		else
			enc[o++] = *c;
	}
	enc[o] = '\0';
	snprintf(url, sizeof(url),
		 "http://127.0.0.1:%d/_mock/publish?channel=%s&count=%d", port,
		 enc, count);
	return http_call("POST", url, NULL, "", resp, sizeof(resp));
}

/* Points fd 2 at fd (after flushing stderr); returns the saved fd 2. */
static int
stderr_to_fd(int fd)
{
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	if (saved < 0)
		return -1;
	if (dup2(fd, STDERR_FILENO) < 0) {
		close(saved);
		return -1;
	}
	return saved;
}

int
stderr_redirect(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	int saved = stderr_to_fd(fd);
	close(fd);
	return saved;
}

int
stderr_restore(int saved)
{
	fflush(stderr);
	int rc = dup2(saved, STDERR_FILENO) < 0 ? -1 : 0;
	close(saved);
	return rc;
}

char *
stderr_capture(void (*fn)(const char *), const char *arg, size_t *len)
{
	const char *base = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/sfrelay-stderr-XXXXXX",
		 base != NULL && *base != '\0' ? base : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	/* Unlinked at once: nothing is left behind if the test aborts. */
	unlink(path);
	int saved = stderr_to_fd(fd);
	if (saved < 0) {
		close(fd);
		return NULL;
	}
	fn(arg);
	int restored = stderr_restore(saved);
	off_t n = lseek(fd, 0, SEEK_END);
	char *buf = restored == 0 && n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (buf != NULL && pread(fd, buf, (size_t)n, 0) != n) {
		free(buf);
		buf = NULL;
	}
	close(fd);
	if (buf == NULL)
		return NULL;
	buf[n] = '\0';
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

char *
load_test_file(const char *dir, const char *name, size_t *len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s%s", dir, name);
	char *buf = file_read(path, len);
	if (buf == NULL)
		fail_msg("cannot read %s (run from the repository root)", path);
	return buf;
}

void
expect_str(const char *ctx, const char *field, const char *want,
           const char *got)
{
	if (want == NULL && got == NULL)
		return;
	if (want == NULL || got == NULL || strcmp(want, got) != 0)
		fail_msg("%s: %s: want \"%s\", got \"%s\"", ctx, field,
		         want == NULL ? "(null)" : want,
		         got == NULL ? "(null)" : got);
}

void
expect_long(const char *ctx, const char *field, long want, long got)
{
	if (want != got)
		fail_msg("%s: %s: want %ld, got %ld", ctx, field, want, got);
}

/* The two decoders word a few refusals apart: json-c's leniency is
 * screened after parsing in bayeux_decode, refused by the stream's own
 * parser as it reads. */
#define NONSTD "not a standard JSON value"

const struct harness_bad_body harness_bad_bodies[] = {
    {"not json", "hello, world", 0, "invalid JSON", "invalid JSON"},
    {"html error page", "<html><body>503</body></html>", 0, "invalid JSON",
     "invalid JSON"},
    {"whitespace only", " \r\n\t ", 0, "empty body", "empty body"},
    {"truncated array", "[{\"channel\":\"/meta/connect\",\"succ", 0,
     "truncated", "truncated"},
    {"unclosed array", "[", 0, "truncated", "truncated"},
    {"trailing comma", "[{\"channel\":\"/meta/connect\"},]", 0, "invalid JSON",
     "invalid JSON"},
    {"trailing garbage", "[] x", 0, "invalid JSON", "invalid JSON"},
    {"two documents", "[][]", 0, "invalid JSON", "invalid JSON"},
    {"embedded NUL", "[]\0[]", 5, "invalid JSON", "invalid JSON"},
    {"object body", "{\"channel\":\"/meta/connect\"}", 0, "not a JSON array",
     "not a JSON array"},
    {"string body", "\"[]\"", 0, "not a JSON array", "not a JSON array"},
    {"number body", "42", 0, "not a JSON array", "not a JSON array"},
    {"null body", "null", 0, "not a JSON array", "not a JSON array"},
    {"element is a number", "[{\"channel\":\"/meta/connect\"},5]", 0,
     "element 1 is not a JSON object", "element 1 is not a JSON object"},
    {"element is an array", "[[]]", 0, "element 0 is not a JSON object",
     "element 0 is not a JSON object"},
    {"element is null", "[null]", 0, "element 0 is not a JSON object",
     "element 0 is not a JSON object"},
    {"missing channel", "[{\"channel\":\"/meta/connect\"},{\"id\":\"1\"}]", 0,
     "element 1 has no \"channel\"", "element 1 has no \"channel\""},
    {"null channel", "[{\"channel\":null}]", 0, "element 0 has no \"channel\"",
     "element 0 has no \"channel\""},
    {"numeric channel",
     "[{\"channel\":\"/u/X\"},{\"channel\":\"/u/Y\"},{\"channel\":7}]", 0,
     "element 2: \"channel\" is not a string",
     "element 2: \"channel\" is not a string"},
    {"object channel", "[{\"channel\":{\"name\":\"/topic/X\"}}]", 0,
     "element 0: \"channel\" is not a string",
     "element 0: \"channel\" is not a string"},
    {"empty channel", "[{\"channel\":\"\"}]", 0,
     "element 0: \"channel\" is empty", "element 0: \"channel\" is empty"},
    /* Found by fuzzing: json-c accepts these and writes them back out
     * verbatim, which would give the formatter a payload that is not
     * JSON. */
    {"NaN in data", "[{\"channel\":\"/topic/T\",\"data\":NaN}]", 0, NONSTD,
     "invalid JSON"},
    {"Infinity in data",
     "[{\"channel\":\"/topic/T\",\"data\":{\"n\":-Infinity}}]", 0, NONSTD,
     "invalid JSON"},
    {"number with trailing dot",
     "[{\"channel\":\"/topic/T\",\"data\":{\"n\":1.}}]", 0, NONSTD,
     "invalid JSON"},
    {"number with leading zero",
     "[{\"channel\":\"/topic/T\",\"data\":{\"n\":0625000.5}}]", 0, NONSTD,
     "invalid JSON"},
    {"exponent without digits",
     "[{\"channel\":\"/topic/T\",\"data\":{\"n\":1e}}]", 0, "invalid JSON",
     "invalid JSON"},
    {"channel with a NUL", "[{\"channel\":\"\\u0000/topic/T\"}]", 0,
     "\"channel\" holds a NUL", "\"channel\" holds a NUL"},
    /* Cuts and shapes the stream's own parser meets on its way. */
    {"empty", "", 0, NULL, "empty body"},
    {"missing comma", "[{\"channel\":\"/u/A\"} {\"channel\":\"/u/B\"}]", 0,
     NULL, "expected ',' or ']' after element 0"},
    {"leading comma", "[,{\"channel\":\"/u/A\"}]", 0, NULL,
     "invalid JSON at byte 1"},
    {"cut inside an event", "[{\"channel\":\"/u/A\",\"data\":{\"x\":[1,2", 0,
     NULL, "truncated JSON body (35 bytes)"},
    {"cut after an event", "[{\"channel\":\"/u/A\"}", 0, NULL, "truncated"},
    {"cut after a comma", "[{\"channel\":\"/u/A\"},", 0, NULL, "truncated"},
    {"channel twice, last null", "[{\"channel\":\"/u/A\",\"channel\":null}]", 0,
     NULL, "has no \"channel\""},
    {"element cut by the array's end", "[{\"channel\":\"/u/A\"]", 0, NULL,
     "invalid JSON"},
    {"unbalanced brackets in the element",
     "[{\"channel\":\"/u/A\",\"data\":[}]]", 0, NULL, "invalid JSON"},
};

const size_t harness_bad_bodies_count =
    sizeof(harness_bad_bodies) / sizeof(harness_bad_bodies[0]);
