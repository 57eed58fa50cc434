#!/usr/bin/env bash
# A real single-node SLURM cluster (slurmctld + slurmd + slurmdbd + MariaDB + munged) on this
# machine, run as root, for chordflow's SLURM executor and its tests. See slurm/README.md.
#
#   slurm/cluster.sh install   apt-get the packages (idempotent)
#   slurm/cluster.sh start     generate configs, start every daemon, wait until a job can run
#   slurm/cluster.sh stop      cancel jobs, stop the daemons by their pid files, verify they are gone
#   slurm/cluster.sh status    which daemons run, and what sinfo says
#   slurm/cluster.sh env       print `export SLURM_CONF=...` for clients in another shell
#
# Runtime files (generated configs, pid files, logs, state, spool, MariaDB datadir) live in
# $CHORDFLOW_SLURM_RUN (default: slurm/run/ next to this script, gitignored).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEMPLATES="$SCRIPT_DIR/templates"
RUN="${CHORDFLOW_SLURM_RUN:-$SCRIPT_DIR/run}"
CLUSTER="${CHORDFLOW_SLURM_CLUSTER:-chordflow}"
PARTITION="${CHORDFLOW_SLURM_PARTITION:-debug}"
CTLD_PORT="${CHORDFLOW_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${CHORDFLOW_SLURM_SLURMD_PORT:-6818}"
DBD_PORT="${CHORDFLOW_SLURM_DBD_PORT:-6819}"
DB_PORT="${CHORDFLOW_SLURM_DB_PORT:-16033}"   # not 3306, so a system MariaDB can keep its port
DB_USER="slurm"
DB_NAME="slurm_acct_db"
START_TIMEOUT_S="${CHORDFLOW_SLURM_START_TIMEOUT:-180}"
STOP_TIMEOUT_S="${CHORDFLOW_SLURM_STOP_TIMEOUT:-30}"
# Leave this much memory to the OS: slurmd drains a node whose RealMemory exceeds what it sees.
MEM_RESERVE_PCT=5

PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
SYSTEM_CONF=/etc/slurm/slurm.conf
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
MUNGE_PID="$MUNGE_RUN/munged.pid"

ETC="$RUN/etc"
PIDS="$RUN/pid"
LOGS="$RUN/log"
SLURM_CONF_FILE="$ETC/slurm.conf"
MY_CNF="$ETC/my.cnf"
DB_SOCKET="$RUN/mysql/mysqld.sock"
# Present when this script started munged, so `stop` leaves a munged it did not start alone.
MUNGE_OWNED_MARK="$PIDS/munged.started-by-cluster-sh"

export SLURM_CONF="$SLURM_CONF_FILE"

log() { printf '[cluster.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (daemons run as SlurmUser=root)"; }

# --- pid-file helpers ---------------------------------------------------------------------------
pid_from_file() {  # prints the pid in $1 if that process is alive
    local file=$1 pid
    [[ -s $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && { echo "$pid"; return 0; }
    return 1
}

is_running() { pid_from_file "$1" >/dev/null; }

stop_by_pidfile() {  # name pidfile: SIGTERM, wait, SIGKILL; removes the pid file
    local name=$1 file=$2 pid waited=0
    if ! pid=$(pid_from_file "$file"); then
        rm -f "$file"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if (( waited >= STOP_TIMEOUT_S * 10 )); then
            log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_S}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -0 "$pid" 2>/dev/null && die "$name (pid $pid) is still running after SIGKILL"
    rm -f "$file"
}

wait_for() {  # description timeout_s command...: retry the command until it succeeds
    local what=$1 timeout=$2 start
    shift 2
    start=$(date +%s)
    until "$@" >/dev/null 2>&1; do
        if (( $(date +%s) - start >= timeout )); then
            log "timed out after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

show_logs_and_die() {
    log "start failed: $*"
    local f
    for f in "$LOGS"/mariadb.log "$LOGS"/slurmdbd.log "$LOGS"/slurmctld.log "$LOGS"/slurmd.log; do
        [[ -f $f ]] || continue
        printf '\n===== last lines of %s =====\n' "$f" >&2
        tail -n 25 "$f" >&2
    done
    if is_running "$PIDS/slurmctld.pid"; then
        printf '\n===== sinfo =====\n' >&2
        timeout 10 sinfo -N -l >&2 2>&1 || true
    fi
    die "$* (logs above; run 'slurm/cluster.sh stop' to clean up)"
}

# --- install ------------------------------------------------------------------------------------
cmd_install() {
    require_root
    local missing=() bin
    for bin in slurmctld slurmd sinfo munged slurmdbd mariadbd mariadb-install-db; do
        command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
    done
    if (( ${#missing[@]} == 0 )); then
        log "packages already installed (${PACKAGES[*]})"
    else
        log "missing ${missing[*]}: installing ${PACKAGES[*]}"
        # No init system here: stop the packages' maintainer scripts from starting daemons.
        local policy=/usr/sbin/policy-rc.d added_policy=0
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && added_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
            || { (( added_policy )) && rm -f "$policy"; die "apt-get install failed"; }
        (( added_policy )) && rm -f "$policy"
    fi
    ensure_munge_key
}

ensure_munge_key() {
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating $MUNGE_KEY"
        install -d -o munge -g munge -m 0700 "$(dirname "$MUNGE_KEY")"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY"
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    # munged refuses a key readable by others or not owned by its user.
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
}

# --- config generation ---------------------------------------------------------------------------
db_password() {
    local file="$ETC/db_password"
    if [[ ! -s $file ]]; then
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$file")
    fi
    cat "$file"
}

render() {  # template output mode
    local template=$1 out=$2 mode=$3 cpus mem_kb mem_mb
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    mem_mb=$(( mem_kb / 1024 * (100 - MEM_RESERVE_PCT) / 100 ))
    (umask 077 && sed \
        -e "s|@RUN@|$RUN|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@PARTITION@|$PARTITION|g" \
        -e "s|@CPUS@|$cpus|g" -e "s|@MEM_MB@|$mem_mb|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" \
        -e "s|@DB_USER@|$DB_USER|g" -e "s|@DB_NAME@|$DB_NAME|g" -e "s|@DB_PASS@|$(db_password)|g" \
        "$template" >"$out.tmp")
    chmod "$mode" "$out.tmp"
    mv -f "$out.tmp" "$out"
}

generate_configs() {
    mkdir -p "$ETC" "$PIDS" "$LOGS" "$RUN/state" "$RUN/spool" "$RUN/mysql"
    chmod 0755 "$RUN" "$ETC"
    render "$TEMPLATES/slurm.conf.in" "$SLURM_CONF_FILE" 0644
    # slurmdbd insists on a private config owned by SlurmUser: it holds the DB password.
    render "$TEMPLATES/slurmdbd.conf.in" "$ETC/slurmdbd.conf" 0600
    render "$TEMPLATES/my.cnf.in" "$MY_CNF" 0644
    link_system_conf
}

link_system_conf() {
    # Clients (sinfo, sbatch, sacct: submitit calls them) read /etc/slurm/slurm.conf unless
    # SLURM_CONF is set, so point it at the generated file; never replace a real cluster's file.
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    if [[ -e $SYSTEM_CONF && ! -L $SYSTEM_CONF ]]; then
        log "WARNING: $SYSTEM_CONF is a real file, left alone; clients need: export SLURM_CONF=$SLURM_CONF_FILE"
        return 0
    fi
    ln -sfn "$SLURM_CONF_FILE" "$SYSTEM_CONF"
}

# --- daemons -------------------------------------------------------------------------------------
start_munge() {
    ensure_munge_key
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    if is_running "$MUNGE_PID"; then
        log "munged already running"
    else
        log "starting munged"
        rm -f "$MUNGE_PID"
        runuser -u munge -- /usr/sbin/munged </dev/null || die "munged failed to start (see /var/log/munge/munged.log)"
        touch "$MUNGE_OWNED_MARK"
    fi
    wait_for "munge credentials" 20 bash -c 'munge -n | unmunge' || die "munge does not work"
}

mysql_root() { mariadb --no-defaults --protocol=socket --socket="$DB_SOCKET" -uroot "$@"; }

start_mariadb() {
    local datadir="$RUN/mysql/data"
    if [[ ! -d $datadir/mysql ]]; then
        log "initialising MariaDB datadir $datadir"
        mkdir -p "$datadir"
        mariadb-install-db --defaults-file="$MY_CNF" --user=root --auth-root-authentication-method=socket \
            --skip-test-db >"$LOGS/mariadb-install.log" 2>&1 \
            || { tail -n 30 "$LOGS/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    if is_running "$PIDS/mariadb.pid"; then
        log "MariaDB already running"
    else
        log "starting MariaDB on 127.0.0.1:$DB_PORT"
        # mariadbd does not daemonize itself: detach it from this shell and its terminal.
        setsid /usr/sbin/mariadbd --defaults-file="$MY_CNF" --user=root </dev/null >>"$LOGS/mariadb.log" 2>&1 &
        local pid=$! waited=0
        until mysql_root -e "SELECT 1" >/dev/null 2>&1; do
            # Fail fast (port taken, bad datadir) instead of waiting out the timeout.
            kill -0 "$pid" 2>/dev/null || show_logs_and_die "MariaDB exited during start-up"
            (( waited++ < 120 )) || show_logs_and_die "MariaDB did not come up within 60s"
            sleep 0.5
        done
    fi
    wait_for "MariaDB" 60 mysql_root -e "SELECT 1" || show_logs_and_die "MariaDB does not answer"
    local pass
    pass=$(db_password)
    # Idempotent: the user and database survive restarts; the password is re-applied each time.
    mysql_root <<SQL || show_logs_and_die "could not create the accounting database user"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$pass';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$pass';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
}

start_slurm_daemon() {  # name pidfile command...
    local name=$1 pidfile=$2
    shift 2
    if is_running "$pidfile"; then
        log "$name already running"
        return 0
    fi
    log "starting $name"
    # The slurm daemons fork into the background themselves and write their pid file.
    "$@" </dev/null >>"$LOGS/$name.stdout.log" 2>&1 || show_logs_and_die "$name exited with an error"
    wait_for "$name pid file" 30 is_running "$pidfile" || show_logs_and_die "$name did not stay up"
}

cluster_registered() { sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; }

node_state() { sinfo -h -N -n localhost -o '%T' 2>/dev/null | head -n 1; }

node_idle() { [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]]; }

sacct_answers() { sacct -n -X -S now-1minute >/dev/null 2>&1; }

cmd_start() {
    require_root
    local t0
    t0=$(date +%s)
    command -v slurmctld >/dev/null 2>&1 || cmd_install
    if is_running "$PIDS/slurmctld.pid" && is_running "$PIDS/slurmd.pid" && node_idle && sacct_answers; then
        log "cluster already up"
        return 0
    fi
    generate_configs
    start_munge
    start_mariadb
    start_slurm_daemon slurmdbd "$PIDS/slurmdbd.pid" /usr/sbin/slurmdbd
    wait_for "slurmdbd" 60 sacctmgr -n list cluster || show_logs_and_die "slurmdbd does not answer"
    if ! cluster_registered; then
        log "registering cluster '$CLUSTER' in the accounting database"
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || show_logs_and_die "sacctmgr add cluster failed"
    fi
    start_slurm_daemon slurmctld "$PIDS/slurmctld.pid" /usr/sbin/slurmctld
    wait_for "slurmctld" 60 scontrol ping || show_logs_and_die "slurmctld does not answer"
    start_slurm_daemon slurmd "$PIDS/slurmd.pid" /usr/sbin/slurmd -N localhost
    local deadline=$(( t0 + START_TIMEOUT_S ))
    until node_idle; do
        # A node left drained/down by an earlier unclean stop does not come back by itself.
        if [[ $(node_state) =~ drain|down ]]; then
            scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
        fi
        (( $(date +%s) < deadline )) || show_logs_and_die "node 'localhost' not idle (state: $(node_state))"
        sleep 0.5
    done
    until sacct_answers; do
        (( $(date +%s) < deadline )) || show_logs_and_die "sacct does not answer"
        sleep 0.5
    done
    log "cluster up in $(( $(date +%s) - t0 ))s: $(sinfo -h -o '%P %D %C %T' | head -n 1) (partition nodes cpus(A/I/O/T) state)"
}

cancel_all_jobs() {
    scontrol ping >/dev/null 2>&1 || return 0
    local ids
    ids=$(squeue -h -o '%A' 2>/dev/null | tr '\n' ' ')
    [[ -n ${ids// /} ]] || return 0
    log "cancelling jobs: $ids"
    # shellcheck disable=SC2086
    scancel $ids >/dev/null 2>&1 || true
    wait_for "jobs to finish" 20 bash -c '[[ -z $(squeue -h -t R,CG 2>/dev/null) ]]' || true
}

cmd_stop() {
    require_root
    cancel_all_jobs
    stop_by_pidfile slurmd "$PIDS/slurmd.pid"
    stop_by_pidfile slurmctld "$PIDS/slurmctld.pid"
    stop_by_pidfile slurmdbd "$PIDS/slurmdbd.pid"
    stop_by_pidfile mariadb "$PIDS/mariadb.pid"
    if [[ -e $MUNGE_OWNED_MARK ]]; then
        stop_by_pidfile munged "$MUNGE_PID"
        rm -f "$MUNGE_OWNED_MARK"
    fi
    verify_stopped
}

verify_stopped() {
    local name file left=()
    for name in slurmd slurmctld slurmdbd mariadb; do
        file="$PIDS/$name.pid"
        is_running "$file" && left+=("$name")
    done
    (( ${#left[@]} == 0 )) || die "still running: ${left[*]}"
    log "cluster stopped"
    # Job steps outlive slurmd; after the cancel above none should be left from this cluster.
    local steps
    steps=$(pgrep -x slurmstepd 2>/dev/null | tr '\n' ' ' || true)
    [[ -z ${steps// /} ]] || log "WARNING: slurmstepd processes still running: $steps"
}

cmd_status() {
    local name file pid rc=0
    for name in munged mariadb slurmdbd slurmctld slurmd; do
        file="$PIDS/$name.pid"
        [[ $name == munged ]] && file=$MUNGE_PID
        if pid=$(pid_from_file "$file"); then
            printf '%-10s running (pid %s)\n' "$name" "$pid"
        else
            printf '%-10s stopped\n' "$name"
            rc=3
        fi
    done
    if (( rc == 0 )); then
        sinfo || rc=3
    fi
    return $rc
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF_FILE" ;;
    *)
        echo "usage: $0 {install|start|stop|restart|status|env}" >&2
        exit 2
        ;;
esac
