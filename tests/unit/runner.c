/* SPDX-License-Identifier: MIT */
/* One Check runner for every unit suite. */
#include <check.h>
#include <stdlib.h>

#include "suites.h"

int main(void) {
        SRunner *sr = srunner_create(upcase_suite());
        srunner_add_suite(sr, duration_suite());
        srunner_add_suite(sr, addr_suite());
        srunner_add_suite(sr, config_suite());
        srunner_add_suite(sr, log_suite());
        srunner_add_suite(sr, shared_suite());
        srunner_add_suite(sr, source_suite());
        srunner_add_suite(sr, control_suite());
        srunner_add_suite(sr, ctl_suite());
        srunner_add_suite(sr, client_suite());
        srunner_add_suite(sr, handover_suite());
        srunner_add_suite(sr, fds_suite());
        srunner_add_suite(sr, conn_suite());
        srunner_add_suite(sr, dispatch_suite());
        srunner_add_suite(sr, proxy_suite());
        srunner_add_suite(sr, fork_helper_suite());
        srunner_add_suite(sr, udp_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
