/* A throw-away PostgreSQL server for tests (see pgtest.h). */

/* setgroups() and the dirent type field are outside POSIX proper. */
#define _DEFAULT_SOURCE 1

#include "pgtest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <libpq-fe.h>

#include "harness.h"

#define INITDB_TIMEOUT_MS 60000
#define READY_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS 15000
#define QUIT_TIMEOUT_MS 3000
#define PORT_TRIES 5
#define RMTREE_DEPTH 24

/* The newest /usr/lib/postgresql/<major>/bin that holds a server. */
static int
find_bindir(char *out, size_t len)
{
	DIR *d = opendir("/usr/lib/postgresql");
	struct dirent *e;
	long best = -1;
	char path[512];
	if (d == NULL) {
		fprintf(stderr, "pgtest: no /usr/lib/postgresql (install the "
		                "Debian package postgresql)\n");
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		char *end = NULL;
		long v = strtol(e->d_name, &end, 10);
		if (end == e->d_name || *end != '\0' || v <= best)
			continue;
		snprintf(path, sizeof(path),
		         "/usr/lib/postgresql/%.32s/bin/postgres", e->d_name);
		if (access(path, X_OK) != 0)
			continue;
		best = v;
		snprintf(out, len, "/usr/lib/postgresql/%.32s/bin", e->d_name);
	}
	closedir(d);
	if (best < 0) {
		fprintf(stderr, "pgtest: no server under /usr/lib/postgresql/"
		                "*/bin\n");
		return -1;
	}
	return 0;
}

/* A port nothing listens on right now (the kernel's pick). */
static int
free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int port = -1;
	if (s < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = 0;
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(s, (struct sockaddr *)&a, &alen) == 0)
		port = ntohs(a.sin_port);
	close(s);
	return port;
}

static int
random_hex(char *out, size_t len)
{
	unsigned char raw[16];
	int fd = open("/dev/urandom", O_RDONLY);
	ssize_t got = fd >= 0 ? read(fd, raw, sizeof(raw)) : -1;
	if (fd >= 0)
		close(fd);
	if (got != (ssize_t)sizeof(raw) || len < 2 * sizeof(raw) + 1)
		return -1;
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

/* Copies the last lines of a log to stderr, to explain a failure. */
static void
show_log_tail(const char *path)
{
	char buf[2048];
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from =
	    end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	fprintf(stderr, "pgtest: --- end of %s ---\n%s\npgtest: ---\n", path,
	        buf);
}

/*
 * Runs argv as the server's user with stdout and stderr appended to log.
 * The child gets the parent-death signal sig (after the identity change,
 * which would clear it), so it never outlives this process.
 */
static pid_t
spawn(const struct pgtest *pg, const char *const *argv, const char *log,
      int sig)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	int in = open("/dev/null", O_RDONLY);
	if (fd < 0 || in < 0)
		_exit(126);
	dup2(in, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	/* Descriptors of the test (pipes to other children) stay here. */
	for (int i = 3; i < 1024; i++)
		close(i);
	if (geteuid() == 0 && (setgroups(0, NULL) != 0 ||
	                       setgid(pg->gid) != 0 || setuid(pg->uid) != 0)) {
		fprintf(stderr, "pgtest: cannot become uid %ld: %s\n",
		        (long)pg->uid, strerror(errno));
		_exit(126);
	}
	if (prctl(PR_SET_PDEATHSIG, sig) != 0 || getppid() != parent)
		_exit(126);
	if (chdir(pg->dir) != 0 || access(pg->dir, W_OK | X_OK) != 0) {
		fprintf(stderr,
		        "pgtest: %s is not usable by uid %ld (is every parent "
		        "directory searchable?): %s\n",
		        pg->dir, (long)getuid(), strerror(errno));
		_exit(126);
	}
	static const char *const env[] = {"PATH=/usr/bin:/bin", "LC_ALL=C",
	                                  "LANG=C", "TZ=UTC", NULL};
	const char *const *envp = env;
	/* execve's prototype predates const; it does not write. */
	char *const *av, *const *ev;
	memcpy(&av, &argv, sizeof(av));
	memcpy(&ev, &envp, sizeof(ev));
	execve(argv[0], av, ev);
	fprintf(stderr, "pgtest: cannot run %s: %s\n", argv[0],
	        strerror(errno));
	_exit(127);
}

/* Waits for pid up to timeout_ms. Returns its wait status, or -1 (still
 * running, or not our child). */
static int
wait_pid(pid_t pid, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;
	int st = 0;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR)
			return -1;
		if (now_ms() >= end)
			return -1;
		sleep_ms(10);
	}
}

static int
run_initdb(struct pgtest *pg)
{
	char initdb[512], log[1200];
	snprintf(initdb, sizeof(initdb), "%s/initdb", pg->bindir);
	snprintf(log, sizeof(log), "%s/initdb.log", pg->dir);
	const char *argv[] = {initdb,
	                      "-D",
	                      pg->datadir,
	                      "-U",
	                      "postgres",
	                      "--auth-local=trust",
	                      "--auth-host=scram-sha-256",
	                      "-E",
	                      "UTF8",
	                      "--locale=C",
	                      "--no-sync",
	                      "--no-instructions",
	                      NULL};
	pid_t pid = spawn(pg, argv, log, SIGKILL);
	if (pid < 0) {
		fprintf(stderr, "pgtest: fork: %s\n", strerror(errno));
		return -1;
	}
	int st = wait_pid(pid, INITDB_TIMEOUT_MS);
	if (st == -1) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fprintf(stderr, "pgtest: initdb did not finish in %d ms\n",
		        INITDB_TIMEOUT_MS);
		show_log_tail(log);
		return -1;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "pgtest: initdb failed (status %d)\n", st);
		show_log_tail(log);
		return -1;
	}
	return 0;
}

/* PQping until the server answers; -1 if it died or took too long. */
static int
wait_ready(struct pgtest *pg)
{
	char conninfo[256];
	snprintf(conninfo, sizeof(conninfo),
	         "host=127.0.0.1 port=%d dbname=postgres user=postgres "
	         "connect_timeout=2 sslmode=disable gssencmode=disable",
	         pg->port);
	long long end = now_ms() + READY_TIMEOUT_MS;
	while (now_ms() < end) {
		int st = 0;
		if (waitpid(pg->pid, &st, WNOHANG) == pg->pid) {
			pg->pid = 0;
			return -1;
		}
		if (PQping(conninfo) == PQPING_OK)
			return 0;
		sleep_ms(25);
	}
	return -2;
}

/* Starts the postmaster on pg->port; 0, -1 (it died: maybe the port was
 * taken) or -2 (it did not get ready; it has been stopped). */
static int
launch(struct pgtest *pg)
{
	char postgres[512], log[1200], port[16];
	snprintf(postgres, sizeof(postgres), "%s/postgres", pg->bindir);
	snprintf(log, sizeof(log), "%s/postgres.log", pg->dir);
	snprintf(port, sizeof(port), "%d", pg->port);
	/* Durability is not under test here, start-up time is. */
	const char *argv[] = {postgres,
	                      "-D",
	                      pg->datadir,
	                      "-p",
	                      port,
	                      "-k",
	                      pg->dir,
	                      "-c",
	                      "listen_addresses=127.0.0.1",
	                      "-c",
	                      "fsync=off",
	                      "-c",
	                      "full_page_writes=off",
	                      "-c",
	                      "max_connections=40",
	                      "-c",
	                      "shared_buffers=16MB",
	                      "-c",
	                      "log_min_messages=warning",
	                      NULL};
	/* SIGQUIT is an immediate shutdown: the postmaster takes its
	 * children down with it. */
	pg->pid = spawn(pg, argv, log, SIGQUIT);
	if (pg->pid < 0) {
		pg->pid = 0;
		fprintf(stderr, "pgtest: fork: %s\n", strerror(errno));
		return -1;
	}
	int rc = wait_ready(pg);
	if (rc == -2) {
		fprintf(stderr,
		        "pgtest: server on port %d not ready after "
		        "%d ms\n",
		        pg->port, READY_TIMEOUT_MS);
		show_log_tail(log);
		pgtest_stop(pg);
	}
	return rc;
}

static int
exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "pgtest: statement failed: %s",
		        PQerrorMessage(c));
	PQclear(r);
	return ok ? 0 : -1;
}

/* The role and database the relay uses, made by the superuser over the
 * Unix socket (trusted there; TCP asks for a password). */
static int
create_role(const struct pgtest *pg)
{
	char conninfo[1400], sql[256];
	snprintf(conninfo, sizeof(conninfo),
	         "host=%s port=%d dbname=postgres user=postgres "
	         "connect_timeout=5",
	         pg->dir, pg->port);
	PGconn *c = PQconnectdb(conninfo);
	int rc = -1;
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pgtest: superuser connection failed: %s",
		        PQerrorMessage(c));
		goto out;
	}
	snprintf(sql, sizeof(sql), "CREATE ROLE sfrelay LOGIN PASSWORD '%s'",
	         pg->password);
	if (exec_ok(c, sql) != 0 ||
	    exec_ok(c, "CREATE DATABASE sfrelay OWNER sfrelay") != 0)
		goto out;
	rc = 0;
out:
	PQfinish(c);
	return rc;
}

static int
server_identity(struct pgtest *pg)
{
	if (geteuid() != 0) {
		pg->uid = getuid();
		pg->gid = getgid();
		return 0;
	}
	struct passwd *pw = getpwnam("postgres");
	if (pw == NULL) {
		fprintf(stderr, "pgtest: running as root and there is no "
		                "\"postgres\" user (install the Debian "
		                "package postgresql)\n");
		return -1;
	}
	pg->uid = pw->pw_uid;
	pg->gid = pw->pw_gid;
	if (chown(pg->dir, pg->uid, pg->gid) != 0) {
		fprintf(stderr, "pgtest: chown %s: %s\n", pg->dir,
		        strerror(errno));
		return -1;
	}
	return 0;
}

int
pgtest_start(struct pgtest *pg, const char *dir)
{
	struct stat sb;
	memset(pg, 0, sizeof(*pg));
	if (dir == NULL || strlen(dir) > 90) {
		/* The Unix socket path must fit in sun_path. */
		fprintf(stderr, "pgtest: directory name missing or too long\n");
		return -1;
	}
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "pgtest: %s is not a directory\n", dir);
		return -1;
	}
	snprintf(pg->dir, sizeof(pg->dir), "%s", dir);
	snprintf(pg->datadir, sizeof(pg->datadir), "%s/pgdata", dir);
	if (find_bindir(pg->bindir, sizeof(pg->bindir)) != 0 ||
	    server_identity(pg) != 0)
		return -1;
	if (random_hex(pg->password, sizeof(pg->password)) != 0) {
		fprintf(stderr, "pgtest: no random bytes\n");
		return -1;
	}
	if (run_initdb(pg) != 0)
		return -1;
	int rc = -1;
	/* Another test may take the port between the probe and the bind. */
	for (int i = 0; i < PORT_TRIES && rc == -1; i++) {
		pg->port = free_port();
		if (pg->port <= 0)
			break;
		rc = launch(pg);
	}
	if (rc != 0) {
		char log[1200];
		snprintf(log, sizeof(log), "%s/postgres.log", pg->dir);
		fprintf(stderr, "pgtest: the server did not start\n");
		if (rc == -1)
			show_log_tail(log);
		pgtest_stop(pg);
		return -1;
	}
	if (create_role(pg) != 0) {
		pgtest_stop(pg);
		return -1;
	}
	snprintf(pg->url, sizeof(pg->url),
	         "postgres://sfrelay:%s@127.0.0.1:%d/sfrelay?sslmode=disable",
	         pg->password, pg->port);
	return 0;
}

static int
proc_state(pid_t pid, char *state, pid_t *ppid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The command name may hold anything; the fields follow its ')'. */
	char *p = strrchr(buf, ')');
	long pp = 0;
	if (p == NULL || sscanf(p + 1, " %c %ld", state, &pp) != 2)
		return -1;
	*ppid = (pid_t)pp;
	return 0;
}

int
pgtest_pid_alive(pid_t pid)
{
	char state = 0;
	pid_t ppid = 0;
	if (pid <= 0 || proc_state(pid, &state, &ppid) != 0)
		return 0;
	return state != 'Z' && state != 'X';
}

size_t
pgtest_pids(const struct pgtest *pg, pid_t *pids, size_t max)
{
	size_t n = 0;
	if (pg->pid <= 0 || max == 0 || !pgtest_pid_alive(pg->pid))
		return 0;
	pids[n++] = pg->pid;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL && n < max) {
		char *end = NULL;
		long v = strtol(e->d_name, &end, 10);
		char state = 0;
		pid_t ppid = 0;
		if (end == e->d_name || *end != '\0' || v <= 0)
			continue;
		if (proc_state((pid_t)v, &state, &ppid) == 0 &&
		    ppid == pg->pid && state != 'Z' && state != 'X')
			pids[n++] = (pid_t)v;
	}
	if (d != NULL)
		closedir(d);
	return n;
}

int
pgtest_stop(struct pgtest *pg)
{
	if (pg->pid <= 0)
		return 0;
	int timeout =
	    pg->stop_timeout_ms > 0 ? pg->stop_timeout_ms : STOP_TIMEOUT_MS;
	kill(pg->pid, SIGINT);
	if (wait_pid(pg->pid, timeout) != -1) {
		pg->pid = 0;
		return 0;
	}
	fprintf(stderr,
	        "pgtest: fast shutdown of port %d took over %d ms; "
	        "killing it\n",
	        pg->port, timeout);
	/* The children go with an immediate shutdown; a postmaster that
	 * cannot do even that (stopped, wedged) is killed with them. */
	kill(pg->pid, SIGQUIT);
	if (wait_pid(pg->pid, QUIT_TIMEOUT_MS) == -1) {
		pid_t pids[256];
		size_t n = pgtest_pids(pg, pids, 256);
		for (size_t i = 0; i < n; i++)
			kill(pids[i], SIGKILL);
		kill(pg->pid, SIGKILL);
		waitpid(pg->pid, NULL, 0);
		/* Orphans are reaped by init; wait until they are gone. */
		long long end = now_ms() + QUIT_TIMEOUT_MS;
		for (size_t i = 1; i < n; i++)
			while (pgtest_pid_alive(pids[i]) && now_ms() < end)
				sleep_ms(10);
	}
	pg->pid = 0;
	return -1;
}

int
pgtest_restart(struct pgtest *pg)
{
	if (pg->datadir[0] == '\0') {
		fprintf(stderr, "pgtest: restart of a server never started\n");
		return -1;
	}
	pgtest_stop(pg);
	int rc = launch(pg);
	if (rc != 0) {
		char log[1200];
		snprintf(log, sizeof(log), "%s/postgres.log", pg->dir);
		fprintf(stderr, "pgtest: restart on port %d failed\n",
		        pg->port);
		if (rc == -1)
			show_log_tail(log);
		pgtest_stop(pg);
		return -1;
	}
	return 0;
}

int
pgtest_query(const struct pgtest *pg, const char *sql, char *out, size_t len)
{
	const char *const keys[] = {"dbname", "connect_timeout", NULL};
	const char *const vals[] = {pg->url, "5", NULL};
	int rc = -1;
	if (len == 0)
		return -1;
	out[0] = '\0';
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pgtest: connection to port %d failed: %s",
		        pg->port, PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	PGresult *r = PQexec(c, sql);
	switch (PQresultStatus(r)) {
	case PGRES_COMMAND_OK:
		rc = 0;
		break;
	case PGRES_TUPLES_OK:
		rc = 0;
		if (PQntuples(r) > 0 && PQnfields(r) > 0 &&
		    !PQgetisnull(r, 0, 0)) {
			const char *v = PQgetvalue(r, 0, 0);
			if (strlen(v) >= len)
				rc = -1;
			else
				memcpy(out, v, strlen(v) + 1);
		}
		break;
	default:
		fprintf(stderr, "pgtest: query failed: %s", PQerrorMessage(c));
		break;
	}
	PQclear(r);
	PQfinish(c);
	return rc;
}

static void
rmtree_at(const char *path, int depth)
{
	struct stat sb;
	if (lstat(path, &sb) != 0)
		return;
	if (S_ISDIR(sb.st_mode) && depth < RMTREE_DEPTH) {
		DIR *d = opendir(path);
		struct dirent *e;
		char sub[4096];
		while (d != NULL && (e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 ||
			    strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
			rmtree_at(sub, depth + 1);
		}
		if (d != NULL)
			closedir(d);
		rmdir(path);
		return;
	}
	unlink(path);
}

void
pgtest_rmtree(const char *path)
{
	if (path != NULL && path[0] != '\0' && strcmp(path, "/") != 0)
		rmtree_at(path, 0);
}

void
pgtest_cleanup(struct pgtest *pg)
{
	char path[1200];
	if (pg->dir[0] == '\0')
		return;
	pgtest_stop(pg);
	pgtest_rmtree(pg->datadir);
	snprintf(path, sizeof(path), "%s/postgres.log", pg->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/initdb.log", pg->dir);
	unlink(path);
	/* Left behind only when the server was killed. */
	snprintf(path, sizeof(path), "%s/.s.PGSQL.%d", pg->dir, pg->port);
	unlink(path);
	snprintf(path, sizeof(path), "%s/.s.PGSQL.%d.lock", pg->dir, pg->port);
	unlink(path);
}

int
pgtest_group_setup(void **state, size_t size, const char *name)
{
	struct pgtest_fixture *f = calloc(1, size);
	if (f == NULL) {
		fprintf(stderr, "pgtest: out of memory\n");
		return -1;
	}
	f->dir = harness_tmpdir(name);
	if (f->dir == NULL) {
		fprintf(stderr, "pgtest: no temp dir for %s\n", name);
		free(f);
		return -1;
	}
	if (pgtest_start(&f->db, f->dir) != 0) {
		pgtest_rmtree(f->dir);
		free(f->dir);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

int
pgtest_group_teardown(void **state)
{
	struct pgtest_fixture *f = *state;
	pgtest_cleanup(&f->db);
	pgtest_rmtree(f->dir);
	free(f->dir);
	free(f);
	*state = NULL;
	return 0;
}

int
pgtest_test_setup(void **state)
{
	struct pgtest_fixture *f = *state;
	if (f->db.pid == 0 && pgtest_restart(&f->db) != 0)
		return -1;
	f->base = event_base_new();
	return f->base != NULL ? 0 : -1;
}

int
pgtest_test_teardown(void **state)
{
	struct pgtest_fixture *f = *state;
	event_base_free(f->base);
	f->base = NULL;
	return 0;
}

struct until {
	struct event_base *base;
	const int *flag;
	int want;
	long long end;
};

static void
until_tick(evutil_socket_t fd, short what, void *arg)
{
	struct until *u = arg;
	(void)fd;
	(void)what;
	if (*u->flag >= u->want || now_ms() >= u->end)
		event_base_loopbreak(u->base);
}

int
pgtest_run_until(struct event_base *base, const int *flag, int want,
                 int timeout_ms)
{
	struct until u = {base, flag, want, now_ms() + timeout_ms};
	struct event *tick = event_new(base, -1, EV_PERSIST, until_tick, &u);
	struct timeval tv = {0, 10000};
	event_add(tick, &tv);
	event_base_dispatch(base);
	event_free(tick);
	return *flag >= want;
}

static void
for_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

void
pgtest_run_for(struct event_base *base, int ms)
{
	struct event *t = evtimer_new(base, for_done, base);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(t, &tv);
	event_base_dispatch(base);
	event_free(t);
}
