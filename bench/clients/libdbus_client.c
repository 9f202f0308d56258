/* A small libdbus client for the client matrix (bench/matrix.py): what LXC and other C
 * callers of cgmanager do — dbus_connection_open_private() (no Hello: the original daemon
 * does not answer it), then dbus_connection_send_with_reply_and_block() per call.
 *
 * Built by the bench with the system compiler:
 *     cc -O2 -o C libdbus_client.c $(pkg-config --cflags --libs dbus-1)
 *
 * Usage: libdbus_client ADDRESS.  Then one command per line on stdin, one answer per line:
 *     N THINK_US | Method sig arg arg ; Method sig arg | Method ...
 * runs N iterations; iteration i makes the calls of alternative i % (number of
 * alternatives) ('|' separates alternatives, ';' calls), then sleeps THINK_US µs (not
 * timed).  Signatures hold only 's' and 'i'.  Answer: "ok <ns> <ns> …" (one latency per
 * iteration) or "err <D-Bus error name> <message>".  EOF ends the client.
 */
#include <dbus/dbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OBJ "/org/linuxcontainers/cgmanager"
#define IFACE "org.linuxcontainers.cgmanager0_0"
#define MAX_ARGS 8
#define MAX_CALLS 4
#define MAX_ALTS 4

struct call {
	const char *method;
	const char *sig;
	char *args[MAX_ARGS];
	int nargs;
};

struct alt {
	struct call calls[MAX_CALLS];
	int ncalls;
};

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int parse_call(char *text, struct call *c)
{
	char *save = NULL, *tok;
	int i = 0;
	c->nargs = 0;
	for (tok = strtok_r(text, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		if (i == 0)
			c->method = tok;
		else if (i == 1)
			c->sig = strcmp(tok, "-") == 0 ? "" : tok;
		else if (c->nargs < MAX_ARGS)
			c->args[c->nargs++] = tok;
		i++;
	}
	return i >= 2 && (int)strlen(c->sig) == c->nargs ? 0 : -1;
}

/* One call; 0 on a method return, -1 (error printed) otherwise. */
static int do_call(DBusConnection *conn, const struct call *c)
{
	DBusMessage *msg, *reply;
	DBusMessageIter it;
	DBusError err;
	int k;

	msg = dbus_message_new_method_call(NULL, OBJ, IFACE, c->method);
	dbus_message_iter_init_append(msg, &it);
	for (k = 0; k < c->nargs; k++) {
		if (c->sig[k] == 'i') {
			dbus_int32_t v = (dbus_int32_t)atoi(c->args[k]);
			dbus_message_iter_append_basic(&it, DBUS_TYPE_INT32, &v);
		} else {
			const char *s = c->args[k];
			if (strcmp(s, "''") == 0)
				s = "";
			dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &s);
		}
	}
	dbus_error_init(&err);
	reply = dbus_connection_send_with_reply_and_block(conn, msg, 10000, &err);
	dbus_message_unref(msg);
	if (!reply) {
		printf("err %s %s\n", err.name, err.message);
		fflush(stdout);
		dbus_error_free(&err);
		return -1;
	}
	dbus_message_unref(reply);
	return 0;
}

int main(int argc, char **argv)
{
	DBusConnection *conn;
	DBusError err;
	char *line = NULL;
	size_t cap = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
		return 2;
	}
	dbus_error_init(&err);
	conn = dbus_connection_open_private(argv[1], &err);
	if (!conn) {
		fprintf(stderr, "connect: %s\n", err.message);
		return 1;
	}
	/* libdbus authenticates lazily, with the first message: do it now, or the connection
	 * waits mid-handshake until the first command (and a daemon may time it out) */
	{
		struct call ping = {"Ping", "i", {"0"}, 1};
		if (do_call(conn, &ping) < 0)
			return 1;
	}
	while (getline(&line, &cap, stdin) > 0) {
		struct alt alts[MAX_ALTS];
		int nalts = 0, n, think_us, i;
		char *save = NULL, *part, *head, *body;
		long long *lat;
		struct timespec pause;

		line[strcspn(line, "\n")] = 0;
		head = strtok_r(line, "|", &save);
		if (!head || sscanf(head, "%d %d", &n, &think_us) != 2 || n <= 0) {
			printf("err bad-command %s\n", line);
			fflush(stdout);
			continue;
		}
		while ((body = strtok_r(NULL, "|", &save)) && nalts < MAX_ALTS) {
			char *csave = NULL;
			struct alt *a = &alts[nalts++];
			a->ncalls = 0;
			for (part = strtok_r(body, ";", &csave); part && a->ncalls < MAX_CALLS;
			     part = strtok_r(NULL, ";", &csave))
				if (parse_call(part, &a->calls[a->ncalls++]) < 0) {
					printf("err bad-call %s\n", part);
					fflush(stdout);
					return 2;
				}
		}
		if (nalts == 0) {
			printf("err bad-command no calls\n");
			fflush(stdout);
			continue;
		}
		lat = calloc(n, sizeof(*lat));
		pause.tv_sec = think_us / 1000000;
		pause.tv_nsec = (long)(think_us % 1000000) * 1000;
		for (i = 0; i < n; i++) {
			const struct alt *a = &alts[i % nalts];
			long long t0 = now_ns();
			int k, bad = 0;
			for (k = 0; k < a->ncalls && !bad; k++)
				bad = do_call(conn, &a->calls[k]);
			if (bad)
				break;
			lat[i] = now_ns() - t0;
			if (think_us > 0)
				nanosleep(&pause, NULL);
		}
		if (i == n) {
			fputs("ok", stdout);
			for (i = 0; i < n; i++)
				printf(" %lld", lat[i]);
			fputc('\n', stdout);
			fflush(stdout);
		}
		free(lat);
	}
	free(line);
	dbus_connection_close(conn);
	dbus_connection_unref(conn);
	return 0;
}
