/* SPDX-License-Identifier: MIT */
/* poolagentd: the agent on every VM of the pool. See poolagentd(8). */

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "conf.h"
#include "log.h"
#include "manager.h"

static const char *arg_config = CONF_DEFAULT_PATH;
static bool arg_config_given = false;
static const char *arg_config_dir = CONF_DEFAULT_DROPIN_DIR;
static bool arg_check_config = false;

static void help(void) {
        printf("Usage: poolagentd [OPTIONS]\n\n"
               "The pool agent: workspace mount, user notebook links, control socket.\n\n"
               "  -c, --config=FILE       configuration file (default " CONF_DEFAULT_PATH ")\n"
               "  -d, --config-dir=DIR    drop-in directory (default " CONF_DEFAULT_DROPIN_DIR ")\n"
               "                          \"\" reads no drop-ins\n"
               "      --check-config      parse and verify the configuration, then exit\n"
               "  -h, --help              show this help\n"
               "      --version           show the version\n\n"
               "See poolagentd(8) and poolagent.conf(5).\n");
}

/* 0: go on; 1: done (help/version), exit 0; <0: usage error (already reported). */
static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_CHECK_CONFIG };
        static const struct option options[] = {
                {"config", required_argument, NULL, 'c'},
                {"config-dir", required_argument, NULL, 'd'},
                {"check-config", no_argument, NULL, ARG_CHECK_CONFIG},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:d:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        arg_config_given = true;
                        break;
                case 'd':
                        arg_config_dir = isempty(optarg) ? NULL : optarg;
                        break;
                case ARG_CHECK_CONFIG:
                        arg_check_config = true;
                        break;
                case 'h':
                        help();
                        return 1;
                case ARG_VERSION:
                        printf("poolagentd %s\n", PROJECT_VERSION);
                        return 1;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc)
                return log_error_errno(
                        -EINVAL, "Unexpected argument '%s'; see --help", argv[optind]);
        return 0;
}

static int load_config(Config **ret) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = config_load(arg_config, arg_config_given, arg_config_dir, ret, &error);
        if (r == -EINVAL)
                return log_error_errno(
                        r, "Invalid configuration, refusing to start:\n%s", error ? error : "");
        if (r < 0)
                return log_error_errno(r, "Failed to load the configuration: %m");
        return 0;
}

static int run(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        Config *config = NULL;
        int r;

        log_setup("poolagentd", LOG_TARGET_AUTO);
        r = parse_argv(argc, argv);
        if (r != 0)
                return r < 0 ? r : 0;

        r = load_config(&config);
        if (r < 0)
                return r;
        if (arg_check_config) {
                config_free(config);
                printf("Configuration OK\n");
                return 0;
        }

        r = manager_new(
                &(ManagerConfigSource){arg_config, arg_config_given, arg_config_dir}, config, &m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the agent: %m");
        r = manager_start(m);
        if (r < 0)
                return r;
        return manager_run(m);
}

int main(int argc, char *argv[]) {
        int r = run(argc, argv);

        if (r < 0)
                (void)sd_notifyf(false, "ERRNO=%d\nSTATUS=Failed to start: %s", -r, strerror(-r));
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
