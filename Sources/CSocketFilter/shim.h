#ifndef PTPCHAT_CSOCKETFILTER_SHIM_H
#define PTPCHAT_CSOCKETFILTER_SHIM_H
// Classic BPF socket filters (struct sock_filter, struct sock_fprog, SO_ATTACH_FILTER): the
// relay's ban list at its listening sockets (RelayCore's ListenerBans). Linux only.
#if defined(__linux__)
#include <sys/socket.h>
#include <linux/filter.h>
#endif
#endif
