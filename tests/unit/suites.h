/* SPDX-License-Identifier: MIT */
#pragma once
#include <check.h>

Suite *upcase_suite(void);
Suite *duration_suite(void);
Suite *addr_suite(void);
Suite *config_suite(void);
Suite *log_suite(void);
Suite *shared_suite(void);
Suite *source_suite(void);
Suite *control_suite(void);
Suite *ctl_suite(void);
Suite *client_suite(void);
Suite *handover_suite(void);
Suite *fds_suite(void);
Suite *conn_suite(void);
Suite *dispatch_suite(void);
Suite *proxy_suite(void);
Suite *fork_helper_suite(void);
Suite *udp_suite(void);
