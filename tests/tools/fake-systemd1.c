/* SPDX-License-Identifier: MIT */
/* fake-systemd1: answers as org.freedesktop.systemd1 on the bus at $DBUS_SYSTEM_BUS_ADDRESS with
 * the one thing the agent's unit check reads: the property ActiveState of
 * org.freedesktop.systemd1.Unit on /org/freedesktop/systemd1/unit/NAME (NAME escaped as systemd
 * does). The state of unit U is the first line of STATE_DIR/U, read at each call; no such file
 * is "inactive", as systemd answers for a unit that does not exist.
 *
 * Usage: fake-systemd1 STATE_DIR   (prints "ready" once it owns the name; ends on SIGTERM)
 * For tests; not installed. */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

static const char *state_dir;

static int get_active_state(
        sd_bus *bus,
        const char *path,
        const char *interface,
        const char *property,
        sd_bus_message *reply,
        void *userdata,
        sd_bus_error *ret_error) {
        char *name = NULL, file[4096], state[64] = "inactive";
        ssize_t n = -1;
        int fd, r;

        r = sd_bus_path_decode(path, "/org/freedesktop/systemd1/unit", &name);
        if (r <= 0)
                return sd_bus_error_set(
                        ret_error, SD_BUS_ERROR_UNKNOWN_OBJECT, "no such unit path");
        if (strchr(name, '/')) {
                free(name);
                return sd_bus_error_set(ret_error, SD_BUS_ERROR_INVALID_ARGS, "bad unit name");
        }
        (void)snprintf(file, sizeof(file), "%s/%s", state_dir, name);
        free(name);
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
                n = read(fd, state, sizeof(state) - 1);
                (void)close(fd);
                if (n >= 0) {
                        state[n] = '\0';
                        state[strcspn(state, "\n")] = '\0';
                }
        }
        return sd_bus_message_append(reply, "s", state);
}

static const sd_bus_vtable unit_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("ActiveState", "s", get_active_state, 0, 0),
        SD_BUS_VTABLE_END,
};

static int find_unit(
        sd_bus *bus,
        const char *path,
        const char *interface,
        void *userdata,
        void **ret_found,
        sd_bus_error *ret_error) {
        *ret_found = NULL;
        return 1; /* every unit path exists, as with systemd */
}

int main(int argc, char *argv[]) {
        sd_event *event = NULL;
        sd_bus *bus = NULL;
        sigset_t mask;
        int r;

        if (argc != 2) {
                fprintf(stderr, "Usage: %s STATE_DIR\n", argv[0]);
                return 2;
        }
        state_dir = argv[1];
        (void)sigemptyset(&mask);
        (void)sigaddset(&mask, SIGTERM);
        (void)sigaddset(&mask, SIGINT);
        (void)sigprocmask(SIG_BLOCK, &mask, NULL);
        r = sd_event_default(&event);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_bus_open_system(&bus);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(
                        bus, NULL, "/org/freedesktop/systemd1/unit",
                        "org.freedesktop.systemd1.Unit", unit_vtable, find_unit, NULL);
        if (r >= 0)
                r = sd_bus_request_name(bus, "org.freedesktop.systemd1", 0);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, 0);
        if (r < 0) {
                fprintf(stderr, "fake-systemd1: %s\n", strerror(-r));
                return 1;
        }
        printf("ready\n");
        (void)fflush(stdout);
        r = sd_event_loop(event);
        sd_bus_flush_close_unref(bus);
        sd_event_unref(event);
        return r < 0 ? 1 : 0;
}
