/*
 * floor: the cheapest possible Streaming API client, the floor the relay
 * is compared with. It logs in (OAuth password grant), handshakes,
 * subscribes with a replay position and long-polls /meta/connect with
 * libcurl (the same HTTP stack as the relay), writing every response body
 * to /dev/null and counting events by counting "replayId" keys in it. It
 * decodes nothing: what it costs is the transport alone.
 *
 *   floor -u LOGIN_URL -c CH1,CH2 -n EVENTS [-r REPLAY] [-L] [-o FILE]
 *
 * -L also finds "PubUs":<microseconds> in each event and records the time
 * the bytes arrived minus that (the same latency benchrun -L measures on
 * a client's lines). The report (events, bytes, connects, latency) goes
 * to FILE, or stdout. Exits 0 once EVENTS events arrived, 1 on an error.
 */
#include <stdint.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "stats.h"

#define API "61.0"

struct buf {
	char *p;
	size_t len, cap;
};

/* Streaming matcher for one key; the keys used have no proper prefix that
 * is also a suffix other than the leading quote, which restart handles. */
struct matcher {
	const char *key;
	size_t klen, j;
};

struct conn_state {
	int devnull;
	uint64_t events, bytes;
	struct matcher rid;
	struct matcher fail; /* "successful":false: a Bayeux error */
	int failed;
	/* latency */
	int latency;
	struct matcher pub;
	int in_num;
	int64_t num;
	struct bench_samples lat;
};

static int64_t
real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Feeds c; returns 1 when the key just completed. */
static int
match_step(struct matcher *m, char c)
{
	if (c == m->key[m->j]) {
		if (++m->j == m->klen) {
			m->j = 0;
			return 1;
		}
		return 0;
	}
	m->j = c == m->key[0] ? 1 : 0;
	return 0;
}

static size_t
collect_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;

	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *p = realloc(b->p, cap);

		if (p == NULL)
			return 0;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, ptr, n);
	b->len += n;
	b->p[b->len] = '\0';
	return n;
}

static size_t
connect_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct conn_state *s = arg;
	size_t n = size * nmemb, i;
	int64_t now = s->latency ? real_us() : 0;

	if (write(s->devnull, ptr, n) < 0)
		return 0;
	s->bytes += n;
	for (i = 0; i < n; i++) {
		char c = ptr[i];

		if (match_step(&s->rid, c))
			s->events++;
		if (match_step(&s->fail, c))
			s->failed = 1;
		if (!s->latency)
			continue;
		if (s->in_num) {
			if (c >= '0' && c <= '9') {
				s->num = s->num * 10 + (c - '0');
				continue;
			}
			if (s->num > 0)
				bench_samples_add(&s->lat, now - s->num);
			s->in_num = 0;
		}
		if (match_step(&s->pub, c)) {
			s->in_num = 1;
			s->num = 0;
		}
	}
	return n;
}

/* Copies the string value of "key":"..." in json into out. 0 or -1. */
static int
json_str(const char *json, const char *key, char *out, size_t len)
{
	char pat[64];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	p = json != NULL ? strstr(json, pat) : NULL;
	if (p == NULL)
		return -1;
	p += strlen(pat);
	e = strchr(p, '"');
	if (e == NULL || (size_t)(e - p) >= len)
		return -1;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return 0;
}

static int
post(CURL *h, const char *url, const char *body, struct curl_slist *hdrs,
     curl_write_callback cb, void *arg, long *code)
{
	CURLcode rc;

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, arg);
	rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		fprintf(stderr, "floor: POST %s: %s\n", url,
			curl_easy_strerror(rc));
		return -1;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: floor -u LOGIN_URL -c CHANNELS -n EVENTS "
			"[-r REPLAY] [-L] [-o FILE]\n");
}

int
main(int argc, char **argv)
{
	const char *login = NULL, *channels = NULL, *replay = "-2",
		   *outpath = NULL;
	uint64_t want = 0;
	struct conn_state st;
	struct buf b = {0};
	struct curl_slist *hdrs = NULL;
	char url[512], token[256], instance[256], client[64], auth[300];
	char *user = NULL, *form = NULL, *sub = NULL, *conn = NULL, *chans;
	uint64_t connects = 0;
	long code = 0;
	int i, rc = 1;
	size_t nch = 0, cap;
	CURL *h;
	FILE *out;

	memset(&st, 0, sizeof(st));
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-L") == 0)
			st.latency = 1;
		else if (i + 1 < argc && strcmp(argv[i], "-u") == 0)
			login = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "-c") == 0)
			channels = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "-n") == 0)
			want = strtoull(argv[++i], NULL, 10);
		else if (i + 1 < argc && strcmp(argv[i], "-r") == 0)
			replay = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "-o") == 0)
			outpath = argv[++i];
		else {
			usage();
			return 64;
		}
	}
	if (login == NULL || channels == NULL || want == 0) {
		usage();
		return 64;
	}
	st.devnull = open("/dev/null", O_WRONLY);
	st.rid.key = "\"replayId\"";
	st.rid.klen = strlen(st.rid.key);
	st.pub.key = "\"PubUs\":";
	st.pub.klen = strlen(st.pub.key);
	st.fail.key = "\"successful\":false";
	st.fail.klen = strlen(st.fail.key);
	if (st.devnull < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return 1;
	h = curl_easy_init();
	if (h == NULL)
		return 1;
	curl_easy_setopt(h, CURLOPT_COOKIEFILE, "");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 200L);

	/* Log in. */
	user = curl_easy_escape(h, "relay@sfmock.test", 0);
	cap = 512;
	form = malloc(cap);
	if (user == NULL || form == NULL)
		goto out;
	snprintf(form, cap,
		 "grant_type=password&client_id=sfmock-client-id&"
		 "client_secret=sfmock-client-secret&username=%s&"
		 "password=sfmock-password",
		 user);
	snprintf(url, sizeof(url), "%s/services/oauth2/token", login);
	if (post(h, url, form, NULL, collect_cb, &b, &code) != 0)
		goto out;
	if (code != 200 || json_str(b.p, "access_token", token, sizeof(token)) ||
	    json_str(b.p, "instance_url", instance, sizeof(instance))) {
		fprintf(stderr, "floor: login failed (HTTP %ld): %s\n", code,
			b.p != NULL ? b.p : "");
		goto out;
	}
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, auth);
	snprintf(url, sizeof(url), "%s/cometd/" API, instance);

	/* Handshake. */
	b.len = 0;
	if (post(h, url,
		 "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
		 "\"minimumVersion\":\"1.0\",\"supportedConnectionTypes\":"
		 "[\"long-polling\"],\"ext\":{\"replay\":true}}]",
		 hdrs, collect_cb, &b, &code) != 0)
		goto out;
	if (json_str(b.p, "clientId", client, sizeof(client)) != 0) {
		fprintf(stderr, "floor: handshake failed (HTTP %ld): %s\n", code,
			b.p != NULL ? b.p : "");
		goto out;
	}

	/* Subscribe to every channel in one request, each message carrying
	 * the replay map of all channels. */
	chans = strdup(channels);
	cap = 4 * strlen(channels) * 64 + 1024;
	sub = calloc(1, cap);
	if (chans == NULL || sub == NULL) {
		free(chans);
		goto out;
	}
	{
		char map[4096] = "", *save = NULL, *c;
		size_t used = 0;

		for (c = strtok_r(chans, ",", &save); c != NULL;
		     c = strtok_r(NULL, ",", &save)) {
			used += (size_t)snprintf(map + used, sizeof(map) - used,
						 "%s\"%s\":%s", nch ? "," : "",
						 c, replay);
			nch++;
			if (used >= sizeof(map))
				break;
		}
		free(chans);
		chans = strdup(channels);
		if (chans == NULL)
			goto out;
		used = 0;
		used += (size_t)snprintf(sub + used, cap - used, "[");
		nch = 0;
		for (c = strtok_r(chans, ",", &save); c != NULL;
		     c = strtok_r(NULL, ",", &save)) {
			used += (size_t)snprintf(
				sub + used, cap - used,
				"%s{\"channel\":\"/meta/subscribe\","
				"\"clientId\":\"%s\",\"subscription\":\"%s\","
				"\"ext\":{\"replay\":{%s}}}",
				nch ? "," : "", client, c, map);
			nch++;
		}
		snprintf(sub + used, cap - used, "]");
		free(chans);
	}
	b.len = 0;
	if (post(h, url, sub, hdrs, collect_cb, &b, &code) != 0)
		goto out;
	if (code != 200 || b.p == NULL || strstr(b.p, "\"successful\":false")) {
		fprintf(stderr, "floor: subscribe failed (HTTP %ld): %s\n", code,
			b.p != NULL ? b.p : "");
		goto out;
	}

	/* Long-poll until enough events arrived. */
	cap = strlen(client) + 128;
	conn = malloc(cap);
	if (conn == NULL)
		goto out;
	snprintf(conn, cap,
		 "[{\"channel\":\"/meta/connect\",\"clientId\":\"%s\","
		 "\"connectionType\":\"long-polling\"}]",
		 client);
	while (st.events < want) {
		if (post(h, url, conn, hdrs, connect_cb, &st, &code) != 0)
			goto out;
		connects++;
		if (code != 200) {
			fprintf(stderr, "floor: connect answered HTTP %ld\n",
				code);
			goto out;
		}
		if (st.failed) {
			fprintf(stderr, "floor: connect failed (Bayeux error)\n");
			goto out;
		}
	}
	rc = 0;
out:
	out = outpath != NULL ? fopen(outpath, "w") : stdout;
	if (out != NULL) {
		fprintf(out,
			"events=%" PRIu64 " bytes=%" PRIu64
			" connects=%" PRIu64 " ok=%d",
			st.events, st.bytes, connects, rc == 0);
		if (st.latency)
			fprintf(out,
				" lat_n=%zu lat_p50_us=%" PRId64
				" lat_p99_us=%" PRId64 " lat_max_us=%" PRId64,
				st.lat.n, bench_samples_pct(&st.lat, 50),
				bench_samples_pct(&st.lat, 99),
				bench_samples_max(&st.lat));
		fprintf(out, "\n");
		if (out != stdout)
			fclose(out);
	}
	bench_samples_free(&st.lat);
	curl_slist_free_all(hdrs);
	curl_free(user);
	curl_easy_cleanup(h);
	curl_global_cleanup();
	free(form);
	free(sub);
	free(conn);
	free(b.p);
	close(st.devnull);
	return rc;
}
