/* SPDX-License-Identifier: MIT */
/* azfiles-sas: prints a File service SAS query string (no leading '?') for scripts that talk to
 * azfiles-emu with curl (tests/bench/bench-emu.sh). Uses common/sas.c, the generator the
 * emulator's verifier is tested against.
 *
 *   azfiles-sas --account NAME --key BASE64 --share SHARE [--path DIR/FILE]
 *               [--permissions rcwdl] [--expiry-minutes N] [--protocol https,http]
 *               [--version 2025-05-05]
 *
 * Without --path the token is a share SAS (sr=s), with it a file SAS (sr=f); --account-sas
 * makes an account SAS for the File service instead (ss=f, srt=sco: it may also create and
 * delete shares; --share and --path are then ignored). The default protocol allows plain http,
 * which the emulator on loopback speaks. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64-util.h"
#include "macro.h"
#include "sas.h"
#include "time-util.h"

static const char *arg_account, *arg_key, *arg_share, *arg_path;
static bool arg_account_sas;
static const char *arg_permissions = "rcwdl";
static const char *arg_protocol = "https,http";
static const char *arg_version = "2025-05-05";
static long arg_expiry_minutes = 60;

static void help(void) {
        printf("Usage: azfiles-sas --account NAME --key BASE64 --share SHARE [--path PATH]\n"
               "                   [--permissions rcwdl] [--expiry-minutes N]\n"
               "                   [--protocol https,http] [--version YYYY-MM-DD]\n"
               "       azfiles-sas --account-sas --account NAME --key BASE64 [...]\n"
               "Prints a File service SAS query string (without '?').\n");
}

static int parse_argv(int argc, char *argv[]) {
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {"account", required_argument, NULL, 'a'},
                {"key", required_argument, NULL, 'k'},
                {"share", required_argument, NULL, 's'},
                {"path", required_argument, NULL, 'p'},
                {"permissions", required_argument, NULL, 'P'},
                {"expiry-minutes", required_argument, NULL, 'e'},
                {"protocol", required_argument, NULL, 'r'},
                {"version", required_argument, NULL, 'v'},
                {"account-sas", no_argument, NULL, 'A'},
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case 'a':
                        arg_account = optarg;
                        break;
                case 'k':
                        arg_key = optarg;
                        break;
                case 's':
                        arg_share = optarg;
                        break;
                case 'p':
                        arg_path = optarg;
                        break;
                case 'P':
                        arg_permissions = optarg;
                        break;
                case 'e': {
                        char *end;
                        errno = 0;
                        arg_expiry_minutes = strtol(optarg, &end, 10);
                        if (errno || *end || arg_expiry_minutes <= 0 ||
                            arg_expiry_minutes > 60L * 24 * 365) {
                                fprintf(stderr, "Invalid --expiry-minutes: %s\n", optarg);
                                return -EINVAL;
                        }
                        break;
                }
                case 'r':
                        arg_protocol = optarg;
                        break;
                case 'v':
                        arg_version = optarg;
                        break;
                case 'A':
                        arg_account_sas = true;
                        break;
                default:
                        return -EINVAL;
                }
        if (optind < argc || !arg_account || !arg_key || (!arg_share && !arg_account_sas)) {
                help();
                return -EINVAL;
        }
        return 1;
}

int main(int argc, char *argv[]) {
        _cleanup_free_ uint8_t *key = NULL;
        _cleanup_free_ char *resource = NULL, *query = NULL;
        char expiry[SAS_TIME_MAX];
        size_t key_size;
        SasToken t = {};
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        r = base64_decode(arg_key, &key, &key_size);
        if (r < 0) {
                fprintf(stderr, "Invalid --key (not base64): %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        if (arg_account_sas) {
                resource = NULL;
        } else if (arg_path) {
                if (asprintf(&resource, "%s/%s", arg_share, arg_path) < 0)
                        return EXIT_FAILURE;
        } else if (!(resource = strdup(arg_share)))
                return EXIT_FAILURE;

        t.kind = arg_account_sas ? SAS_ACCOUNT : SAS_SERVICE;
        t.version = (char *)arg_version;
        t.permissions = (char *)arg_permissions;
        t.expiry =
                sas_format_time(expiry, now_realtime_ns() + arg_expiry_minutes * 60 * 1000000000LL);
        t.protocol = (char *)arg_protocol;
        if (arg_account_sas) {
                t.services = (char *)"f";
                t.resource_types = (char *)"sco";
        } else
                t.resource = (char *)(arg_path ? "f" : "s");
        r = sas_generate(&t, arg_account, resource, key, key_size, &query);
        if (r < 0) {
                fprintf(stderr, "Failed to generate the SAS: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        puts(query);
        return EXIT_SUCCESS;
}
