#ifndef PTPCHAT_CSYSTEMD_SHIM_H
#define PTPCHAT_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#endif
