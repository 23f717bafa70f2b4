#!/bin/sh
# SPDX-License-Identifier: MIT
# poweroff / halt / reboot for the harness guest: ask PID 1 (harness-init) to do it cleanly.
# (`kill` is the shell's builtin: minbase has no /bin/kill.)
case "$(basename "$0")" in
    reboot) kill -TERM 1 ;;
    halt) kill -USR1 1 ;;
    *) kill -USR2 1 ;;
esac
