# shellcheck shell=bash
# Finding and installing Debian's nginx (nginx-light) without starting a system nginx.
# Sourced by scripts/validate-deploy.sh and scripts/cluster-test.sh.

find_nginx() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

install_nginx() {
    local apt_log=$1
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || return 1
        sudo=(sudo -n)
    fi
    # Installing the package must not start a system nginx on port 80 (containers have a
    # policy-rc.d that forbids it already; elsewhere one is added for the install only).
    local policy=/usr/sbin/policy-rc.d added=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null &&
            "${sudo[@]}" chmod 0755 "$policy" && added=1
    fi
    local rc=1
    for package in nginx-light nginx; do
        if DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$package" \
            </dev/null >>"$apt_log" 2>&1 ||
            { "${sudo[@]}" apt-get update -qq >>"$apt_log" 2>&1 &&
                DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$package" \
                    </dev/null >>"$apt_log" 2>&1; }; then
            rc=0
            break
        fi
    done
    if [[ $added == 1 ]]; then "${sudo[@]}" rm -f "$policy"; fi
    return $rc
}
