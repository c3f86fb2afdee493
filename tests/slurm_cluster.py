"""A real one-node SLURM cluster with accounting, for tests (standard library only).

    from slurm_cluster import SlurmCluster, available  # tests/ is on sys.path under pytest

    ok, why = available()            # pytest.skip(why) when not ok
    with SlurmCluster(tmp_path, cpus=2, memory_mb=1000, gpus=2) as cluster:
        r = subprocess.run(["sbatch", "--parsable", "--wrap", "sleep 1"],
                           env=cluster.environ(), capture_output=True, text=True, check=True)
        cluster.wait_for_jobs([r.stdout.strip()])
        print(cluster.sacct())       # [{"JobID": "1", "State": "COMPLETED", ...}]
        # or: cluster.run("sacct", "-X", ...).stdout; cluster.env for other processes

Everything lives under ``<workdir>/slurm-cluster``: slurm.conf, slurmdbd.conf, gres.conf,
my.cnf, the munge key, MariaDB's data directory, sockets, pid files, spool/state
directories and logs. Nothing in /etc is read or written: clients find the cluster
through SLURM_CONF (``cluster.env`` holds it, and a PATH starting with ``bin/`` of
wrappers that set SLURM_CONF before running srun, sbatch...: snakemake's slurm-jobstep
plugin strips SLURM_CONF from the environment of the srun it runs inside each job), the
daemons get ``-f``/``--defaults-file``/``--key-file``... options,
and SLURM's auth/munge and cred/munge plugins find the private munge socket through
``AuthInfo=socket=...`` in slurm.conf and slurmdbd.conf, except on connections to
slurmdbd (sacct, sacctmgr, slurmctld), which take it from ``AccountingStoragePass=`` in
slurm.conf. libmunge reads no environment variable for its socket.

Daemons started, in order: mariadbd (TCP on 127.0.0.1 at a free port + a private unix
socket), munged, slurmdbd, then slurmctld and slurmd. The cluster, an account and the
current user are registered with ``sacctmgr -i`` before slurmctld starts, and jobs must
name a valid account (AccountingStorageEnforce=associations), as on a real cluster.
All ports are picked free at random, so parallel runs do not collide.

On exit (also after an exception, or when starting fails halfway) running jobs are
cancelled and every daemon is stopped (SIGTERM, then SIGKILL); leftover slurmstepd and
job processes of this cluster are found through /proc (by their environment) and killed
too. If the test process itself is killed (SIGKILL), the daemons die with it
(PR_SET_PDEATHSIG) and a small watchdog process (this file, run with --watchdog) kills
slurmstepd and the jobs. Install the packages with .ci/install-slurm (Debian, as root).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["SlurmCluster", "SlurmClusterError", "available", "REQUIRED_BINARIES"]

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
# mariadbd or mysqld: either server binary will do
REQUIRED_BINARIES = (
    "slurmctld",
    "slurmd",
    "slurmdbd",
    "munged",
    "mariadbd|mysqld",
    "mariadb-install-db|mysql_install_db",
    "mariadb|mysql",
    "sacct",
    "sacctmgr",
    "sbatch",
    "squeue",
    "sinfo",
    "scancel",
)


CLIENT_COMMANDS = (
    "srun",
    "sbatch",
    "salloc",
    "squeue",
    "scancel",
    "sacct",
    "sacctmgr",
    "sinfo",
    "scontrol",
    "sshare",
    "sstat",
    "sprio",
    "sreport",
    "sattach",
    "sbcast",
)


class SlurmClusterError(RuntimeError):
    """A daemon of the test cluster did not start (the message carries its log's tail)."""


def _which(name: str) -> str | None:
    """The first of the '|'-separated names found on PATH (skipping other test clusters'
    client wrappers) or in the sbin directories."""
    path = os.pathsep.join(
        p
        for p in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if not p.rstrip("/").endswith("slurm-cluster/bin")
    )
    for alt in name.split("|"):
        found = shutil.which(alt, path=path) or next(
            (str(Path(d, alt)) for d in SBIN_DIRS if os.access(Path(d, alt), os.X_OK)), None
        )
        if found:
            return found
    return None


def available() -> tuple[bool, str]:
    """(True, "") when every binary the cluster needs is installed, else (False, why)."""
    missing = [name for name in REQUIRED_BINARIES if _which(name) is None]
    if missing:
        return False, ("not installed: " + ", ".join(missing) + " (run .ci/install-slurm as root)")
    return True, ""


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports (all held open together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        return f"    (no log: {e})"
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty)"


_libc = None


def _die_with_parent():  # preexec_fn: the daemon gets SIGKILL if the test process dies
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def _cluster_pids(cluster_name: str, spare: set[int]) -> list[int]:
    """Live processes of a test cluster: its daemons and slurmstepd (their environment has
    SLURM_TEST_CLUSTER=<name>) and job processes (SLURM_CLUSTER_NAME=<name>; the names
    are random, so no other cluster's jobs match)."""
    marks = (f"SLURM_TEST_CLUSTER={cluster_name}".encode(), f"SLURM_CLUSTER_NAME={cluster_name}".encode())
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in spare:
            continue
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # already dead, waiting for its parent (or init) to reap it
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if any(m in env for m in marks):
            found.append(int(pid))
    return found


def kill_cluster_processes(cluster_name: str, term_wait: float = 1.0) -> None:
    """SIGTERM every process of the cluster (never this one nor its ancestors), wait up to
    term_wait s, then SIGKILL what is left (slurmstepd ignores SIGTERM while it cannot
    reach slurmd)."""
    spare = _ancestors(os.getpid())
    for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, 1.0)):
        found = _cluster_pids(cluster_name, spare)
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _cluster_pids(cluster_name, spare):
            time.sleep(0.05)


def _watchdog(parent: int, cluster_name: str) -> None:
    """Run as `python slurm_cluster.py --watchdog PARENT NAME`: once PARENT is gone (killed
    without a chance to stop its cluster), kill every process of the cluster."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # normal stop: just leave
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.getppid() == parent:
        time.sleep(0.5)
    kill_cluster_processes(cluster_name, term_wait=0.5)


class SlurmCluster:
    """Context manager: a running one-node SLURM cluster (slurmctld, slurmd, slurmdbd,
    munged, MariaDB) configured entirely under ``workdir``.

    cpus, memory_mb: what the node declares (SlurmdParameters=config_overrides, so they
        may differ from the machine). DefMemPerCPU = memory_mb // cpus, so jobs that ask
        for no memory still share the node.
    gpus: fake GPUs (Gres=gpu:N, gres.conf with AutoDetect=off and File= N symlinks to
        /dev/null); jobs asking --gpus/--gres get them, CUDA_VISIBLE_DEVICES is set and
        sacct's AllocTRES shows gres/gpu=N.
    gpu_type: a GPU type (e.g. "a100"): Gres=gpu:<type>:N, so that jobs may also ask for
        --gres=gpu:<type>:N or --gpus=<type>:N (sacct: gres/gpu:<type>=N).
    features: the node's features (Features=, comma-separated), for jobs with -C.
    partition, account: the partition's name and the account the current user gets
        (also made the user's default account).
    timeout: seconds each daemon may take to come up.
    Attributes once started: env (SLURM_CONF, PATH), environ(), run(), sacct(),
    wait_for_jobs(), conf_path, cluster_name, node_name, ports, logs, start_seconds,
    stop_seconds. Runs as root in CI (SlurmUser/SlurmdUser = the current user).
    """

    def __init__(
        self,
        workdir,
        cpus: int = 2,
        memory_mb: int = 2000,
        partition: str = "gpu",
        account: str = "testacct",
        gpus: int = 0,
        gpu_type: str = "",
        features: str = "",
        timeout: float = 30.0,
        cluster_name: str | None = None,
        enforce_associations: bool = True,
        kill_wait: int = 2,
        debug: str = "info",
        extra_slurm_conf: str = "",
    ):
        self.dir = Path(workdir).absolute() / "slurm-cluster"
        self.cpus, self.memory_mb, self.gpus = int(cpus), int(memory_mb), int(gpus)
        self.partition, self.account = partition, account
        self.gpu_type, self.features = gpu_type, features
        self.timeout = timeout
        self.cluster_name = cluster_name or "t" + secrets.token_hex(4)
        self.enforce_associations = enforce_associations
        self.kill_wait = kill_wait
        self.debug = debug
        self.extra_slurm_conf = extra_slurm_conf
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.node_name = socket.gethostname().split(".")[0]
        self.conf_path = self.dir / "etc" / "slurm.conf"
        self.munge_socket = self.dir / "run" / "munge.socket"
        self.db_socket = self.dir / "run" / "mysqld.sock"
        self.logs = self.dir / "log"
        self.bin_dir = self.dir / "bin"
        self.env = {
            "SLURM_CONF": str(self.conf_path),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        }
        self._procs: dict[str, subprocess.Popen] = {}
        self._logfiles: dict[str, list[Path]] = {}
        self.start_seconds = self.stop_seconds = None

    # -- public helpers ---------------------------------------------------------------
    def environ(self, base: dict | None = None) -> dict:
        """A copy of ``base`` (default os.environ) with the cluster's variables."""
        env = dict(os.environ if base is None else base)
        env.update(self.env)
        return env

    def run(self, *args, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        """Run a client command (sbatch, sacct...) against this cluster; returns its output."""
        kw.setdefault("env", self.environ())
        r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise SlurmClusterError(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        return r

    def sacct(self, fields: str = "JobID,JobName,State,Start,End", *extra) -> list[dict]:
        """sacct -X rows of every job of this cluster, as dicts keyed by field name."""
        out = self.run(
            "sacct",
            "-X",
            "--allusers",
            "--parsable2",
            "--noheader",
            f"--format={fields}",
            "--starttime=now-1days",
            *extra,
        ).stdout
        names = fields.split(",")
        return [dict(zip(names, line.split("|"))) for line in out.splitlines() if line]

    def wait_for_jobs(self, job_ids=(), timeout: float = 120, accounted: bool = True) -> None:
        """Wait until squeue is empty and (accounted) sacct shows every job finished,
        including each of ``job_ids`` (a job that ends quickly may leave squeue before
        slurmdbd has its record)."""
        deadline = time.monotonic() + timeout
        want = {str(j) for j in job_ids}
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-o", "%i").stdout.strip():
                if not accounted:
                    return
                rows = self.sacct("JobID,State,End")
                if want <= {r["JobID"] for r in rows} and all(
                    r["State"] not in ("PENDING", "RUNNING", "REQUEUED", "") and r["End"] not in ("", "Unknown")
                    for r in rows
                ):
                    return
            time.sleep(0.25)
        raise SlurmClusterError(
            f"jobs still running after {timeout} s:\n"
            + self.run("squeue", check=False).stdout
            + self.run("sacct", "-X", "--allusers", check=False).stdout
        )

    # -- context manager --------------------------------------------------------------
    def __enter__(self) -> "SlurmCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- start ------------------------------------------------------------------------
    def start(self) -> None:
        ok, why = available()
        if not ok:
            raise SlurmClusterError(why)
        t0 = time.monotonic()
        self._start_watchdog()
        self._write_config()
        self._start_mariadb()
        self._start(
            "munged",
            [
                _which("munged"),
                "-F",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={self.dir / 'etc' / 'munge.key'}",
                f"--pid-file={self.dir / 'run' / 'munged.pid'}",
                f"--log-file={self.logs / 'munged.log'}",
                f"--seed-file={self.dir / 'munge' / 'munged.seed'}",
                "--num-threads=2",
            ],
            self.logs / "munged.log",
        )
        self._wait_mariadb()
        self._create_database()
        self._wait_unix_socket("munged", self.munge_socket)
        self._start("slurmdbd", [_which("slurmdbd"), "-D"], self.logs / "slurmdbd.log")
        self._wait_tcp("slurmdbd", self.ports["dbd"])
        self._register_accounts()
        self._start("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", self.conf_path], self.logs / "slurmctld.log")
        self._start(
            "slurmd", [_which("slurmd"), "-D", "-f", self.conf_path, "-N", self.node_name], self.logs / "slurmd.log"
        )
        self._wait_node_idle()
        self.start_seconds = time.monotonic() - t0

    def _start_watchdog(self) -> None:
        """A separate process that kills the cluster's processes if this one dies without
        stopping it (the daemons also get PR_SET_PDEATHSIG, but slurmstepd and jobs,
        forked by slurmd, would survive)."""
        self._watchdog = subprocess.Popen(
            [sys.executable, "-S", str(Path(__file__).absolute()), "--watchdog", str(os.getpid()), self.cluster_name],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _write_config(self) -> None:
        d = self.dir
        if d.exists():
            shutil.rmtree(d)
        for sub in ("etc", "run", "log", "state", "spool", "munge", "db", "dev", "bin"):
            (d / sub).mkdir(parents=True, mode=0o700)
        d.chmod(0o700)
        self.ports = dict(zip(("ctld", "slurmd", "dbd", "mysql"), _free_ports(4)))
        self.db_password = secrets.token_hex(12)
        key = d / "etc" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        auth = f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket}\n"
        gres_node = ""
        if self.gpus:
            # File= must be a character device (else slurmd drops it and sets no
            # CUDA_VISIBLE_DEVICES): one symlink to /dev/null per fake GPU
            files = [d / "dev" / f"fakegpu{i}" for i in range(self.gpus)]
            for f in files:
                f.symlink_to("/dev/null")
            typed = f"{self.gpu_type}:" if self.gpu_type else ""
            gres_node = f" Gres=gpu:{typed}{self.gpus}"
            type_kw = f" Type={self.gpu_type}" if self.gpu_type else ""
            (d / "etc" / "gres.conf").write_text(
                "AutoDetect=off\n" + "".join(f"NodeName={self.node_name} Name=gpu{type_kw} File={f}\n" for f in files)
            )
        enforce = "associations,limits" if self.enforce_associations else "none"
        user = self.user
        (d / "etc" / "plugstack.conf").write_text("")  # not /etc/slurm/plugstack.conf
        self.conf_path.write_text(f"""\
# test cluster written by tests/slurm_cluster.py
ClusterName={self.cluster_name}
SlurmctldHost={self.node_name}(127.0.0.1)
SlurmctldPort={self.ports["ctld"]}
SlurmdPort={self.ports["slurmd"]}
SlurmUser={user}
SlurmdUser={user}
{auth}CredType=cred/munge
PlugStackConfig={d / "etc" / "plugstack.conf"}
StateSaveLocation={d / "state"}
SlurmdSpoolDir={d / "spool"}
SlurmctldPidFile={d / "run" / "slurmctld.pid"}
SlurmdPidFile={d / "run" / "slurmd-%n.pid"}
SlurmctldLogFile={self.logs / "slurmctld.log"}
SlurmdLogFile={self.logs / "slurmd.log"}
SlurmctldDebug={self.debug}
SlurmdDebug={self.debug}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU={max(1, self.memory_mb // self.cpus)}
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports["dbd"]}
# connections to slurmdbd take their munge socket from here, not from AuthInfo
AccountingStoragePass={self.munge_socket}
AccountingStorageEnforce={enforce}
AccountingStorageTRES=gres/gpu{",gres/gpu:" + self.gpu_type if self.gpu_type else ""}
JobCompType=jobcomp/none
MailProg=/bin/true
SlurmdParameters=config_overrides
ReturnToService=2
KillWait={self.kill_wait}
MinJobAge=60
InactiveLimit=0
SlurmdTimeout=60
{"GresTypes=gpu" if self.gpus else ""}
NodeName={self.node_name} NodeHostname={self.node_name} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb}{gres_node}{" Features=" + self.features if self.features else ""} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node_name} Default=YES MaxTime=INFINITE State=UP
{self.extra_slurm_conf}
""")
        self._write_client_wrappers()
        dbd = d / "etc" / "slurmdbd.conf"  # slurmdbd reads dirname($SLURM_CONF)/slurmdbd.conf
        dbd.write_text(f"""\
{auth}DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.ports["dbd"]}
SlurmUser={user}
PidFile={d / "run" / "slurmdbd.pid"}
LogFile={self.logs / "slurmdbd.log"}
DebugLevel={self.debug}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports["mysql"]}
StorageUser=slurm
StoragePass={self.db_password}
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)
        # one option file for mariadb-install-db, mariadbd and the mariadb client
        self.my_cnf = d / "etc" / "my.cnf"
        self.my_cnf.write_text(f"""\
[client]
socket={self.db_socket}
user=root
[mariadbd]
user=root
datadir={d / "db"}
socket={self.db_socket}
port={self.ports["mysql"]}
bind-address=127.0.0.1
skip-name-resolve
pid-file={d / "run" / "mariadbd.pid"}
log-error={self.logs / "mariadbd.log"}
tmpdir={d / "run"}
skip-log-bin
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
innodb_lock_wait_timeout=900
innodb_flush_log_at_trx_commit=0
innodb_doublewrite=0
innodb_fast_shutdown=1
performance_schema=OFF
innodb_file_per_table=OFF
""")

    def _write_client_wrappers(self) -> None:
        """bin/srun, bin/sbatch...: set SLURM_CONF, then exec the real client.
        snakemake-executor-plugin-slurm-jobstep runs `srun` inside the job with every
        SLURM_* variable but a few removed (SLURM_CONF included), so without these a
        nested srun finds no configuration ("Could not establish a configuration
        source") on a cluster that is not configured in /etc/slurm. PATH survives."""
        for name in CLIENT_COMMANDS:
            real = _which(name)
            if real is None:
                continue
            w = self.bin_dir / name
            w.write_text(f"#!/bin/sh\nSLURM_CONF='{self.conf_path}'\nexport SLURM_CONF\nexec '{real}' \"$@\"\n")
            w.chmod(0o755)

    def _start_mariadb(self) -> None:
        self._init_datadir()
        self._start(
            "mariadbd", [_which("mariadbd|mysqld"), f"--defaults-file={self.my_cnf}"], self.logs / "mariadbd.log"
        )

    def _init_datadir(self) -> None:
        """Create MariaDB's system tables. Feeding mariadbd --bootstrap only the system
        tables' SQL takes ~1.5 s; mariadb-install-db (the fallback) also loads the help
        tables and sys schema and takes ~4 s."""
        log = self.logs / "mariadb-bootstrap.log"
        share = next(
            (
                Path(p)
                for p in ("/usr/share/mysql", "/usr/share/mariadb")
                if Path(p, "mysql_system_tables.sql").is_file()
            ),
            None,
        )
        parts = ["mysql_system_tables.sql", "mysql_performance_tables.sql", "mysql_system_tables_data.sql"]
        if share is not None and all((share / f).is_file() for f in parts):
            sql = "create database if not exists mysql;\nuse mysql;\nSET @auth_root_socket=NULL;\n" + "".join(
                (share / f).read_text() + "\n" for f in parts
            )
            with open(log, "wb") as out:
                r = subprocess.run(
                    [
                        _which("mariadbd|mysqld"),
                        f"--defaults-file={self.my_cnf}",
                        "--bootstrap",
                        "--log-warnings=0",
                        "--log-error=",
                        "--enforce-storage-engine=",
                        "--max_allowed_packet=8M",
                        "--net_buffer_length=16K",
                    ],
                    input=sql.encode(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=self.timeout,
                )
            if r.returncode == 0:
                return
            shutil.rmtree(self.dir / "db")
            (self.dir / "db").mkdir(mode=0o700)
        with open(log, "ab") as out:
            r = subprocess.run(
                [
                    _which("mariadb-install-db|mysql_install_db"),
                    f"--defaults-file={self.my_cnf}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=self.timeout,
            )
        if r.returncode != 0:
            raise SlurmClusterError(f"mariadb-install-db failed ({r.returncode}); {log}:\n" + _tail(log))

    def _start(self, name: str, argv: list, logfile: Path) -> None:
        out = self.logs / f"{name}.out"
        env = self.environ()
        env["SLURM_TEST_CLUSTER"] = self.cluster_name  # marks slurmstepd processes too
        with open(out, "wb") as fh:
            self._procs[name] = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._logfiles[name] = [logfile, out]

    def _fail(self, name: str, what: str) -> SlurmClusterError:
        parts = [f"test SLURM cluster: {name} {what}"]
        for f in self._logfiles.get(name, []):
            parts.append(f"--- {f} (last lines):\n{_tail(f)}")
        return SlurmClusterError("\n".join(parts))

    def _wait(self, name: str, ready, what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        delay = 0.02
        while True:
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise self._fail(name, f"exited with status {proc.returncode} before {what}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise self._fail(name, f"did not {what} within {timeout or self.timeout} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def _wait_unix_socket(self, name: str, path: Path) -> None:
        def ready():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(path))
                return True
            except OSError:
                return False
            finally:
                s.close()

        self._wait(name, ready, f"listen on {path}")

    def _wait_tcp(self, name: str, port: int) -> None:
        def ready():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        self._wait(name, ready, f"listen on 127.0.0.1:{port}")

    def _wait_mariadb(self) -> None:
        self._wait_unix_socket("mariadbd", self.db_socket)

    def _create_database(self) -> None:
        pw = self.db_password
        sql = (
            "CREATE DATABASE IF NOT EXISTS slurm_acct_db;"
            + "".join(
                f"CREATE USER 'slurm'@'{h}' IDENTIFIED BY '{pw}';GRANT ALL ON slurm_acct_db.* TO 'slurm'@'{h}';"
                for h in ("127.0.0.1", "localhost")
            )
            + "FLUSH PRIVILEGES;"
        )
        r = subprocess.run(
            [_which("mariadb|mysql"), f"--defaults-file={self.my_cnf}", "-e", sql],
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        if r.returncode != 0:
            raise self._fail("mariadbd", f"refused to create slurm_acct_db: {r.stderr.strip()}")

    def _sacctmgr(self, *commands: str) -> None:
        r = self.run("sacctmgr", "-i", input="\n".join(commands) + "\n", check=False, timeout=self.timeout)
        out = r.stdout + r.stderr
        if r.returncode != 0 or " error:" in out:
            e = self._fail("slurmdbd", "is up, but sacctmgr failed")
            raise SlurmClusterError(
                f"test SLURM cluster: sacctmgr -i <<< "
                f"{'; '.join(commands)!r} failed ({r.returncode}):\n{out}\n" + str(e).split("\n", 1)[1]
            )

    def _register_accounts(self) -> None:
        """The cluster (creates its tables: ~1.7 s), then the account and the user."""
        c, a, u = self.cluster_name, self.account, self.user
        self._sacctmgr(f"add cluster {c}")
        self._sacctmgr(
            f"add account {a} cluster={c} description=test organization=test",
            f"add user {u} account={a} defaultaccount={a} cluster={c}",
            f"modify user {u} set defaultaccount={a}",
        )

    def _wait_node_idle(self) -> None:
        state = {"s": ""}

        def ready():
            for name in ("slurmctld", "slurmd"):
                proc = self._procs[name]
                if proc.poll() is not None:
                    raise self._fail(name, f"exited with status {proc.returncode} before the node came up")
            try:  # sinfo blocks (retrying) while slurmctld does not answer
                r = self.run("sinfo", "-h", "-N", "-p", self.partition, "-o", "%T", check=False, timeout=5)
            except subprocess.TimeoutExpired:
                state["s"] = "(sinfo timed out)"
                return False
            state["s"] = (r.stdout + r.stderr).strip()
            return r.returncode == 0 and state["s"] == "idle"

        try:
            self._wait("slurmd", ready, "bring the node up (idle in sinfo)")
        except SlurmClusterError as e:
            raise SlurmClusterError(
                f"{e}\nlast sinfo: {state['s']!r}\n--- slurmctld log:\n" + _tail(self.logs / "slurmctld.log")
            ) from None

    # -- stop -------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel jobs, stop every daemon started, kill leftovers. Safe to call twice."""
        t0 = time.monotonic()
        ctld = self._procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            try:  # cancel jobs while slurmctld/slurmd can still clean up and account
                r = self.run("squeue", "-h", "-o", "%i", check=False, timeout=3)
                if r.returncode == 0 and r.stdout.strip():
                    self.run("scancel", "--full", *r.stdout.split(), check=False, timeout=5)
                    deadline = time.monotonic() + self.kill_wait + 3
                    while (
                        time.monotonic() < deadline
                        and self.run("squeue", "-h", "-o", "%i", check=False, timeout=5).stdout.strip()
                    ):
                        time.sleep(0.2)
            except (subprocess.SubprocessError, OSError):
                pass
        for group in (("slurmd", "slurmctld"), ("slurmdbd",), ("munged", "mariadbd")):
            self._terminate([n for n in group if n in self._procs])
        self._kill_leftovers()
        self._procs.clear()
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.terminate()
            try:
                watchdog.wait(5)
            except subprocess.TimeoutExpired:
                watchdog.kill()
            self._watchdog = None
        self.stop_seconds = time.monotonic() - t0

    def _terminate(self, names: list[str], grace: float = 5.0) -> None:
        for n in names:
            self._signal(self._procs[n], signal.SIGTERM)
        deadline = time.monotonic() + grace
        for n in names:
            proc = self._procs[n]
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            self._signal(proc, signal.SIGKILL)  # anything left in its process group

    @staticmethod
    def _signal(proc: subprocess.Popen, sig) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_leftovers(self) -> None:
        kill_cluster_processes(self.cluster_name)

    def __repr__(self) -> str:
        return f"SlurmCluster({self.cluster_name!r}, dir={str(self.dir)!r})"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--watchdog":
        _watchdog(int(sys.argv[2]), sys.argv[3])
    else:
        print(__doc__)
        print("available():", available())
