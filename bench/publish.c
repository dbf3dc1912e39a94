/*
 * publish: publishes events on an sfmock channel at a fixed rate, each
 * carrying its publish time, for the latency benchmark.
 *
 *   publish -u MOCK_URL -c CHANNEL -r PER_SECOND -d SECONDS [-b BODY_FILE]
 *
 * Every millisecond it works out how many events are due by now
 * (rate x elapsed) and publishes that many with one
 * POST /_mock/publish?channel=..&count=K whose JSON body is
 * {"PubUs":<CLOCK_REALTIME microseconds now>, <members of BODY_FILE>}:
 * at 1,000/s one event per request, at 10,000/s about ten. Events of one
 * request share one publish time, which is the time the request left.
 * Prints "published=N requests=R max_batch=K late_ms=L" (late_ms: how far
 * the last request trailed its schedule). Exits 1 when a request failed.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

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

static size_t
discard_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	(void)ptr;
	(void)arg;
	return size * nmemb;
}

/* The members of the JSON object in path, without braces ("" if none). */
static char *
read_members(const char *path)
{
	FILE *f = fopen(path, "r");
	char *s, *open, *close;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return NULL;
	}
	s = calloc(1, (size_t)n + 1);
	if (s == NULL || fread(s, 1, (size_t)n, f) != (size_t)n) {
		free(s);
		fclose(f);
		return NULL;
	}
	fclose(f);
	open = strchr(s, '{');
	close = strrchr(s, '}');
	if (open == NULL || close == NULL || close < open) {
		free(s);
		return NULL;
	}
	*close = '\0';
	memmove(s, open + 1, strlen(open + 1) + 1);
	return s;
}

int
main(int argc, char **argv)
{
	const char *base = NULL, *channel = NULL, *body_file = NULL;
	double rate = 0, secs = 0, start;
	uint64_t total, sent = 0, requests = 0, max_batch = 0;
	char *members = NULL, *body = NULL, *chan_enc = NULL, url[1024];
	size_t body_cap;
	struct curl_slist *hdrs = NULL;
	double late = 0;
	int i, rc = 1;
	CURL *h;

	for (i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "-u") == 0)
			base = argv[i + 1];
		else if (strcmp(argv[i], "-c") == 0)
			channel = argv[i + 1];
		else if (strcmp(argv[i], "-r") == 0)
			rate = strtod(argv[i + 1], NULL);
		else if (strcmp(argv[i], "-d") == 0)
			secs = strtod(argv[i + 1], NULL);
		else if (strcmp(argv[i], "-b") == 0)
			body_file = argv[i + 1];
		else
			break;
	}
	if (i != argc || base == NULL || channel == NULL || rate <= 0 ||
	    secs <= 0) {
		fprintf(stderr, "usage: publish -u MOCK_URL -c CHANNEL "
				"-r PER_SECOND -d SECONDS [-b BODY_FILE]\n");
		return 64;
	}
	members = body_file != NULL ? read_members(body_file) : strdup("");
	if (members == NULL) {
		fprintf(stderr, "publish: cannot read a JSON object from %s\n",
			body_file);
		return 1;
	}
	body_cap = strlen(members) + 64;
	body = malloc(body_cap);
	if (body == NULL || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return 1;
	h = curl_easy_init();
	if (h == NULL)
		return 1;
	chan_enc = curl_easy_escape(h, channel, 0);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_cb);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);

	total = (uint64_t)(rate * secs + 0.5);
	start = mono_s();
	while (sent < total) {
		double now = mono_s(), el = now - start;
		uint64_t due = (uint64_t)(el * rate);
		uint64_t k;
		long code = 0;
		CURLcode cr;

		if (due > total)
			due = total;
		if (due <= sent) {
			/* Sleep to the next event's slot, at most 1 ms. */
			double next = start + (double)(sent + 1) / rate;
			double wait = next - now;
			struct timespec ts;

			if (wait > 0.001)
				wait = 0.001;
			if (wait > 0) {
				ts.tv_sec = 0;
				ts.tv_nsec = (long)(wait * 1e9);
				nanosleep(&ts, NULL);
			}
			continue;
		}
		k = due - sent;
		snprintf(url, sizeof(url), "%s/_mock/publish?channel=%s&count=%" PRIu64,
			 base, chan_enc, k);
		snprintf(body, body_cap, "{\"PubUs\":%" PRId64 "%s%s}", real_us(),
			 members[0] != '\0' ? "," : "", members);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		cr = curl_easy_perform(h);
		if (cr == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		if (cr != CURLE_OK || code != 200) {
			fprintf(stderr, "publish: POST %s: %s (HTTP %ld)\n", url,
				curl_easy_strerror(cr), code);
			goto out;
		}
		sent += k;
		requests++;
		if (k > max_batch)
			max_batch = k;
		late = el - (double)(due - 1) / rate;
	}
	rc = 0;
out:
	printf("published=%" PRIu64 " requests=%" PRIu64 " max_batch=%" PRIu64
	       " late_ms=%.3f elapsed_s=%.3f\n",
	       sent, requests, max_batch, late * 1000, mono_s() - start);
	curl_free(chan_enc);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	curl_global_cleanup();
	free(members);
	free(body);
	return rc;
}
