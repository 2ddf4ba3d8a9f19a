// nfq-delay: holds every packet of one NFQUEUE for a fixed time, then accepts it.
//
// The kernel here has no sch_netem, so the NAT lab delays the "internet" router's traffic with
// an iptables `-j NFQUEUE --queue-num Q` rule and this reader in the same network namespace.
// Every packet gets the same delay, so packets leave in the order they came (a FIFO of packet
// ids and release times is all the state). One thread, no allocation per packet.
//
//   nfq-delay QUEUE DELAY_MS      prints "ready" once bound; SIGTERM/SIGINT end it.
//
// A queue overflow drops packets (as a real link does) and is counted on stderr at exit; the
// rule has no --queue-bypass, so a dead reader stops traffic instead of silently removing the delay.
#define _GNU_SOURCE  // ppoll
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>  // NF_ACCEPT, NF_DROP
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define CAPACITY 65536u  // packets held at once: 20 ms of a ~3 Mpps link, far above the lab's

static struct { uint32_t id; uint64_t due_ns; } held[CAPACITY];
static uint32_t head, tail;  // held[head..tail) in FIFO order, indices mod CAPACITY
static uint64_t delay_ns, overflowed, released;
static volatile sig_atomic_t stopping;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int on_packet(struct nfq_q_handle *queue, struct nfgenmsg *message, struct nfq_data *data, void *context) {
    (void)message; (void)context;
    struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(data);
    if (!header) return 0;
    uint32_t id = ntohl(header->packet_id);
    if (tail - head >= CAPACITY) {  // full: drop this one now rather than grow
        overflowed++;
        return nfq_set_verdict(queue, id, NF_DROP, 0, NULL);
    }
    held[tail % CAPACITY].id = id;
    held[tail % CAPACITY].due_ns = now_ns() + delay_ns;
    tail++;
    return 0;
}

static void release_due(struct nfq_q_handle *queue) {
    uint64_t now = now_ns();
    while (head != tail && held[head % CAPACITY].due_ns <= now) {
        nfq_set_verdict(queue, held[head % CAPACITY].id, NF_ACCEPT, 0, NULL);
        head++;
        released++;
    }
}

static void on_signal(int number) { (void)number; stopping = 1; }

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: nfq-delay QUEUE DELAY_MS\n");
        return 2;
    }
    uint16_t queue_number = (uint16_t)atoi(argv[1]);
    delay_ns = (uint64_t)(atof(argv[2]) * 1e6);
    struct sigaction action = {0};
    action.sa_handler = on_signal;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);

    struct nfq_handle *handle = nfq_open();
    if (!handle) { perror("nfq-delay: nfq_open"); return 1; }
    struct nfq_q_handle *queue = nfq_create_queue(handle, queue_number, on_packet, NULL);
    if (!queue) { perror("nfq-delay: nfq_create_queue"); return 1; }
    // Only the verdict is needed, never the payload.
    if (nfq_set_mode(queue, NFQNL_COPY_META, 0) < 0) { perror("nfq-delay: nfq_set_mode"); return 1; }
    nfq_set_queue_maxlen(queue, CAPACITY);
    int fd = nfq_fd(handle);
    int buffer = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer);
    printf("ready\n");
    fflush(stdout);

    char packet[4096] __attribute__((aligned));
    while (!stopping) {
        // Sleep until the next packet is due (to the nanosecond: ppoll, not poll's milliseconds).
        struct timespec wait, *timeout = NULL;
        if (head != tail) {
            uint64_t due = held[head % CAPACITY].due_ns, now = now_ns(), left = due > now ? due - now : 0;
            wait.tv_sec = (time_t)(left / 1000000000u);
            wait.tv_nsec = (long)(left % 1000000000u);
            timeout = &wait;
        }
        struct pollfd readable = {.fd = fd, .events = POLLIN};
        int ready = ppoll(&readable, 1, timeout, NULL);
        if (ready < 0 && errno != EINTR) { perror("nfq-delay: poll"); break; }
        if (ready > 0) {
            // Drain what is there without blocking, then release what is due.
            for (;;) {
                ssize_t length = recv(fd, packet, sizeof packet, MSG_DONTWAIT);
                if (length > 0) { nfq_handle_packet(handle, packet, (int)length); continue; }
                if (length < 0 && errno == ENOBUFS) { overflowed++; continue; }  // the kernel dropped some
                break;
            }
        }
        release_due(queue);
    }
    // Let what is held go before leaving, so a stopping lab does not strand connections.
    while (head != tail) {
        nfq_set_verdict(queue, held[head % CAPACITY].id, NF_ACCEPT, 0, NULL);
        head++;
    }
    fprintf(stderr, "nfq-delay: released %llu packets, %llu dropped on overflow\n",
            (unsigned long long)released, (unsigned long long)overflowed);
    nfq_destroy_queue(queue);
    nfq_close(handle);
    return 0;
}
