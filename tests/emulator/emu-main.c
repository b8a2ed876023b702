/* SPDX-License-Identifier: MIT */
/* azfiles-emu: an Azure Files (File REST API) and Instance Metadata Service emulator. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base64-util.h"
#include "emu-faults.h"
#include "emu-imds.h"
#include "emu-server.h"
#include "emu-store.h"
#include "log.h"

#ifndef PROJECT_VERSION
#define PROJECT_VERSION "0"
#endif

static const char *arg_listen = "127.0.0.1:10000";
static const char *arg_data = NULL;
static const char *arg_account = NULL;
static const char *arg_key = NULL;
static const char *arg_imds = NULL;
static const char *arg_faults = NULL;

static void help(void) {
        printf("Usage: azfiles-emu --listen ADDR:PORT --data DIR --account NAME --key BASE64\n"
               "                   [--imds ADDR:PORT] [--faults SPEC] [--verbose]\n\n"
               "An Azure Files File REST API and Instance Metadata Service emulator.\n\n"
               "  --listen ADDR:PORT  File service address (port 0: any free port)\n"
               "  --data DIR          where shares are kept (survives restarts)\n"
               "  --account NAME      storage account name (path-style URLs: /NAME/SHARE/...)\n"
               "  --key BASE64        account key for Shared Key and SAS signatures\n"
               "  --imds ADDR:PORT    also serve the Instance Metadata Service there\n"
               "  --faults SPEC       inject faults, see azfiles-emu(1)\n"
               "  --verbose           log every request\n"
               "  --help, --version\n\n"
               "When ready it prints one line to standard output with the endpoints and a\n"
               "connection string. SIGTERM or SIGINT stop it cleanly.\n");
}

static int parse_args(int argc, char **argv) {
        enum {
                ARG_LISTEN = 0x100,
                ARG_DATA,
                ARG_ACCOUNT,
                ARG_KEY,
                ARG_IMDS,
                ARG_FAULTS,
                ARG_VERSION
        };
        static const struct option options[] = {
                {"listen", required_argument, NULL, ARG_LISTEN},
                {"data", required_argument, NULL, ARG_DATA},
                {"account", required_argument, NULL, ARG_ACCOUNT},
                {"key", required_argument, NULL, ARG_KEY},
                {"imds", required_argument, NULL, ARG_IMDS},
                {"faults", required_argument, NULL, ARG_FAULTS},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "hv", options, NULL)) >= 0)
                switch (c) {
                case ARG_LISTEN:
                        arg_listen = optarg;
                        break;
                case ARG_DATA:
                        arg_data = optarg;
                        break;
                case ARG_ACCOUNT:
                        arg_account = optarg;
                        break;
                case ARG_KEY:
                        arg_key = optarg;
                        break;
                case ARG_IMDS:
                        arg_imds = optarg;
                        break;
                case ARG_FAULTS:
                        arg_faults = optarg;
                        break;
                case 'v':
                        log_set_max_level(LOG_DEBUG);
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("azfiles-emu %s\n", PROJECT_VERSION);
                        return 0;
                default:
                        return -EINVAL;
                }
        if (optind < argc)
                return log_error_errno(-EINVAL, "Unexpected argument: %s", argv[optind]);
        if (!arg_data || !arg_account || !arg_key)
                return log_error_errno(
                        -EINVAL, "--data, --account and --key are required (see --help).");
        return 1;
}

static int valid_account_name(const char *s) {
        size_t n = strlen(s);
        if (n < 3 || n > 24)
                return 0;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
                        return 0;
        return 1;
}

int main(int argc, char **argv) {
        Emulator emu = {0};
        _cleanup_free_ char *fault_error = NULL;
        sigset_t mask;
        int r, sig;

        log_setup("azfiles-emu", LOG_TARGET_STDERR);
        r = parse_args(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        if (!valid_account_name(arg_account))
                return log_error_errno(
                               -EINVAL,
                               "Invalid account name '%s': 3-24 lowercase letters and digits.",
                               arg_account),
                       EXIT_FAILURE;
        r = base64_decode(arg_key, &emu.key, &emu.key_size);
        if (r < 0 || emu.key_size == 0)
                return log_error_errno(-EINVAL, "--key is not valid base64."), EXIT_FAILURE;
        emu.account = (char *)arg_account;
        emu.key_base64 = (char *)arg_key;
        emu.data_dir = (char *)arg_data;

        /* Signals are taken synchronously below; block them before any thread starts. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGPIPE);
        (void)pthread_sigmask(SIG_BLOCK, &mask, NULL);

        r = emu_faults_new(arg_faults, &emu.faults, &fault_error);
        if (r < 0)
                return log_error_errno(r, "Invalid --faults: %s", fault_error ? fault_error : "?"),
                       EXIT_FAILURE;
        if (mkdir(arg_data, 0700) < 0 && errno != EEXIST)
                return log_error_errno(NEG_ERRNO(), "Failed to create %s: %m", arg_data),
                       EXIT_FAILURE;
        r = emu_store_open(arg_data, arg_account, &emu.store);
        if (r < 0)
                return log_error_errno(r, "Failed to open the store in %s: %m", arg_data),
                       EXIT_FAILURE;
        r = emu_imds_new(&emu, &emu.imds);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the metadata service: %m"),
                       EXIT_FAILURE;

        /* Both URLs are set before either daemon starts: request threads read them. */
        r = emu_server_listen(&emu, EMU_LISTENER_FILES, arg_listen, &emu.files_url);
        if (r < 0)
                return log_error_errno(r, "Failed to listen on %s: %m", arg_listen), EXIT_FAILURE;
        if (arg_imds) {
                r = emu_server_listen(&emu, EMU_LISTENER_IMDS, arg_imds, &emu.imds_url);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen on %s: %m", arg_imds),
                               EXIT_FAILURE;
        }
        r = emu_server_start(&emu, EMU_LISTENER_FILES);
        if (r >= 0 && arg_imds)
                r = emu_server_start(&emu, EMU_LISTENER_IMDS);
        if (r < 0)
                return log_error_errno(r, "Failed to start the HTTP server: %m"), EXIT_FAILURE;

        printf("azfiles-emu ready: file=%s imds=%s connection-string="
               "\"DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;FileEndpoint=%s;\"\n",
               emu.files_url, emu.imds_url ? emu.imds_url : "-", emu.account, emu.key_base64,
               emu.files_url);
        fflush(stdout);

        sigdelset(&mask, SIGPIPE);
        for (;;) {
                sig = sigwaitinfo(&mask, NULL);
                if (sig == SIGTERM || sig == SIGINT)
                        break;
        }
        log_debug("Received %s, stopping.", strsignal(sig));

        emu_server_stop(&emu);
        emu.imds = emu_imds_free(emu.imds);
        emu.store = emu_store_free(emu.store);
        emu.faults = emu_faults_free(emu.faults);
        free(emu.files_url);
        free(emu.imds_url);
        free(emu.key);
        return EXIT_SUCCESS;
}
