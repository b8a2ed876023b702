/* SPDX-License-Identifier: MIT */
#pragma once

/* MESSAGE_IDs of the agent's operator events (journalctl MESSAGE_ID=...). Stable: never change or
 * reuse one. Generated with systemd-id128 new. */

#define POOLAGENT_MESSAGE_STARTED "MESSAGE_ID=cf86d55c775d4876a0cc529ba08df2d9"
#define POOLAGENT_MESSAGE_STOPPING "MESSAGE_ID=634c0471f73e4aa68e040e9d7ddc813b"
#define POOLAGENT_MESSAGE_CONFIG_RELOADED "MESSAGE_ID=0f5a4462b5424202a38a182198052d1e"
#define POOLAGENT_MESSAGE_CONFIG_RELOAD_FAILED "MESSAGE_ID=8eddf994c31c4bcc9de50685f8bc5377"
#define POOLAGENT_MESSAGE_CONTROL_DENIED "MESSAGE_ID=a6b4b27542084a4b8ebd06f31898c07c"
/* The workspace check (workspace-monitor.c): one id per state it enters. */
#define POOLAGENT_MESSAGE_WORKSPACE_OK "MESSAGE_ID=30693e6e247f4877b996f00f6ae3ef9a"
#define POOLAGENT_MESSAGE_WORKSPACE_NOT_MOUNTED "MESSAGE_ID=b8489c0719a24570bfea807e7e04d526"
#define POOLAGENT_MESSAGE_WORKSPACE_WRONG_TYPE "MESSAGE_ID=55a8816e679a431aa6ac47ec235ea0d0"
#define POOLAGENT_MESSAGE_WORKSPACE_HUNG "MESSAGE_ID=7f553943c7894d949987695a88bcd8f1"
#define POOLAGENT_MESSAGE_WORKSPACE_ERROR "MESSAGE_ID=739d1f90aabe426aa0812831c3ac544b"
/* The agent ends a dead or hung workspace mount and mounts it again (workspace-mount.c). */
#define POOLAGENT_MESSAGE_WORKSPACE_RECOVER "MESSAGE_ID=d1e023a313e440e3b7b0a7c9e7d75026"
/* Per-user notebook links (links-manager.c): logged when a user's state changes. */
#define POOLAGENT_MESSAGE_USER_LINK_CREATED "MESSAGE_ID=a1f6456e52a44e43870b97abf8ab0e6f"
#define POOLAGENT_MESSAGE_USER_LINK_PROBLEM "MESSAGE_ID=178ab2c60a224a5680d35b6c1cd0a1d5"
/* Health (health.c, disk-check.c): a check's reported verdict changed (bad: warning, unhealthy or
 * unknown; ok), the VM became unhealthy or healthy for the load balancer, and the report of the
 * largest consumers of a full disk. */
#define POOLAGENT_MESSAGE_HEALTH_CHECK_FAILED "MESSAGE_ID=4e4d85e7436e409fb47b6174a91ef42e"
#define POOLAGENT_MESSAGE_HEALTH_CHECK_OK "MESSAGE_ID=2aa78eab93d445739b9ce65ce77b1fe1"
#define POOLAGENT_MESSAGE_HEALTH_UNHEALTHY "MESSAGE_ID=442b04c16a984ae59e3034c6ca577cdd"
#define POOLAGENT_MESSAGE_HEALTH_HEALTHY "MESSAGE_ID=836e42a671f94fbea1a3e5afe9c26122"
#define POOLAGENT_MESSAGE_DISK_CONSUMERS "MESSAGE_ID=0e964b98bae5488cbd33b4c847ec6052"
/* The drain (drain.c): a drain started (scheduled event, poolctl drain, shutdown) and finished
 * (with the report in POOLAGENT_DRAIN_REPORT=). */
#define POOLAGENT_MESSAGE_DRAIN_STARTED "MESSAGE_ID=bba149e1eab5409ebd8e08158818e846"
#define POOLAGENT_MESSAGE_DRAIN_FINISHED "MESSAGE_ID=d5419402619d4277b15b6b12ae32b99d"
