/* A Modbus/TCP server on Debian's libmodbus, as a third-party DUT for kentei's corpus.
 *
 *   libmodbus_server PORT
 *
 * Listens on 127.0.0.1 only and serves several clients at once (select), with a register map
 * of its own: holding registers 100..149, input registers 0..19, coils 0..31. Prints
 * `READY modbus://127.0.0.1:PORT` once it listens; ends on SIGTERM. */
#include <errno.h>
#include <modbus.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>
#include <unistd.h>

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) { (void)sig; stopping = 1; }

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    modbus_mapping_t *map = modbus_mapping_new_start_address(0, 32, 0, 0, 100, 50, 0, 20);
    if (ctx == NULL || map == NULL) {
        fprintf(stderr, "libmodbus: %s\n", modbus_strerror(errno));
        return 1;
    }
    /* libmodbus sleeps one response timeout before answering a bad request (to flush the line);
     * 100 ms instead of its 500 ms default keeps the corpus fast and changes no answer. */
    modbus_set_response_timeout(ctx, 0, 100000);
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
                if (client >= 0) {
                    FD_SET(client, &all);
                    if (client > highest) highest = client;
                }
                continue;
            }
            modbus_set_socket(ctx, fd);
            int length = modbus_receive(ctx, query);
            if (length > 0) {
                modbus_reply(ctx, query, length, map);
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
