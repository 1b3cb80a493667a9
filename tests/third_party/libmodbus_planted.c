/* A Modbus/TCP server on Debian's libmodbus with planted bugs, as a fuzz target for kentei.
 *
 *   libmodbus_planted PORT [BUG]
 *
 * BUG names the one planted bug to arm (below); without it all three are armed.
 * Listens on 127.0.0.1 only and serves several clients at once (select). Register map: coils
 * 0..63, holding registers 0..999, input registers 0..99 (kentei's liveness read is input
 * register 0). Prints `READY modbus://127.0.0.1:PORT` once it listens; ends on SIGTERM.
 *
 * The bugs live in a thin "application layer" that looks at each request libmodbus framed
 * before handing it to modbus_reply, the way device firmware often does:
 *   - crash-on-mask-write: Mask Write Register (FC 22) with and-mask 0x8000 aborts (the mask's
 *     sign bit taken for a negative table index);
 *   - crash-on-byte-count: Write Multiple Registers (FC 16) whose byte count is not twice the
 *     quantity aborts (the registers copied by byte count into a quantity-sized buffer);
 *   - hang-on-rw-byte-count: Read/Write Multiple Registers (FC 23) whose write byte count is
 *     not twice the write quantity leaves that connection stuck: everything it sends later is
 *     read and dropped, nothing is answered, until the client closes. Other connections are
 *     served as before.
 * Each bug prints `PLANTED <name>` on stderr when it fires.
 *
 * After the bugs, the application layer closes a connection whose MBAP length disagrees with
 * the frame libmodbus cut. libmodbus frames a request by its function code, not by the MBAP
 * length: without the check, a truncated frame makes it read the next request's bytes as the
 * rest, and that connection is never answered rightly again (a connection hang kentei finds in
 * plain libmodbus within seconds, which would hide the planted bugs). */
#include <errno.h>
#include <modbus.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 1024

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) { (void)sig; stopping = 1; }

static unsigned word(const uint8_t *at) { return ((unsigned)at[0] << 8) | at[1]; }

static const char *armed = NULL; /* NULL: every bug */

static int arms(const char *name) { return armed == NULL || strcmp(armed, name) == 0; }

static void planted(const char *name) {
    fprintf(stderr, "PLANTED %s\n", name);
    fflush(stderr);
}

/* 1: the request may be answered; 0: the connection is stuck from now on. Aborts on a crash bug. */
static int application_layer(const uint8_t *query, int length, int header) {
    if (length < header + 1) return 1;
    const uint8_t *pdu = query + header;
    int size = length - header;
    if (arms("crash-on-mask-write") && pdu[0] == 0x16 && size >= 7 && word(pdu + 3) == 0x8000) {
        planted("crash-on-mask-write");
        abort();
    }
    if (arms("crash-on-byte-count") && pdu[0] == 0x10 && size >= 6 && pdu[5] != 2 * word(pdu + 3)) {
        planted("crash-on-byte-count");
        abort();
    }
    if (arms("hang-on-rw-byte-count") && pdu[0] == 0x17 && size >= 10 && pdu[9] != 2 * word(pdu + 7)) {
        planted("hang-on-rw-byte-count");
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s PORT [BUG]\n", argv[0]);
        return 2;
    }
    if (argc == 3) {
        armed = argv[2];
        if (!arms("crash-on-mask-write") && !arms("crash-on-byte-count") && !arms("hang-on-rw-byte-count")) {
            fprintf(stderr, "unknown bug %s\n", armed);
            return 2;
        }
    }
    int port = atoi(argv[1]);
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    modbus_mapping_t *map = modbus_mapping_new_start_address(0, 64, 0, 0, 0, 1000, 0, 100);
    if (ctx == NULL || map == NULL) {
        fprintf(stderr, "libmodbus: %s\n", modbus_strerror(errno));
        return 1;
    }
    /* libmodbus sleeps one response timeout before answering a bad request, then flushes what
     * the client sent after it; 1 ms keeps a campaign fast and changes no answer. */
    modbus_set_response_timeout(ctx, 0, 1000);
    /* A request cut short (its function code promises more bytes than came) blocks this
     * single-threaded loop for one byte timeout, then closes the connection; 100 ms instead of
     * 500 ms keeps that well inside kentei's liveness timeout (a longer one is a hang it reports). */
    modbus_set_byte_timeout(ctx, 0, 100000);
    int header = modbus_get_header_length(ctx);
    int server = modbus_tcp_listen(ctx, 16);
    if (server < 0) {
        fprintf(stderr, "listen: %s\n", modbus_strerror(errno));
        return 1;
    }
    struct sigaction action = {0};
    action.sa_handler = on_signal;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    printf("READY modbus://127.0.0.1:%d\n", port);
    fflush(stdout);

    static char stuck[MAX_FD];
    fd_set all;
    FD_ZERO(&all);
    FD_SET(server, &all);
    int highest = server;
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    while (!stopping) {
        fd_set ready = all;
        if (select(highest + 1, &ready, NULL, NULL, NULL) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int fd = 0; fd <= highest; fd++) {
            if (!FD_ISSET(fd, &ready)) continue;
            if (fd == server) {
                int client = modbus_tcp_accept(ctx, &server);
                if (client >= MAX_FD) {
                    close(client);
                } else if (client >= 0) {
                    stuck[client] = 0;
                    FD_SET(client, &all);
                    if (client > highest) highest = client;
                }
                continue;
            }
            int length;
            if (stuck[fd]) { /* read and drop: never answered again, closed when the client closes */
                length = (int)recv(fd, query, sizeof query, 0);
                if (length <= 0) {
                    close(fd);
                    FD_CLR(fd, &all);
                }
                continue;
            }
            modbus_set_socket(ctx, fd);
            length = modbus_receive(ctx, query);
            if (length > 0) {
                if (!application_layer(query, length, header)) {
                    stuck[fd] = 1;
                } else if ((int)word(query + 4) != length - 6) {
                    close(fd); /* the MBAP length disagrees with the frame libmodbus cut */
                    FD_CLR(fd, &all);
                } else {
                    modbus_reply(ctx, query, length, map);
                }
            } else if (length == -1) {
                close(fd);
                FD_CLR(fd, &all);
            }
        }
    }
    close(server);
    modbus_mapping_free(map);
    modbus_free(ctx);
    return 0;
}
