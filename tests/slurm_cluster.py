"""A real one-node Slurm cluster (munged, slurmctld, slurmd) in a private scratch folder.

Tests start it once per session to run sbatch for real. Everything it writes lives in
`/tmp/hpcflow-slurm-<random>` (a short path: munge and Slurm socket paths have length limits);
it talks through its own munge socket and two free ports, so sessions cannot collide. Nothing
happens at import or in the constructor.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from tests.slurm.procs import alive, kill_job_processes, owner_alive, owner_token, stop_pid

SCRATCH_PREFIX = "hpcflow-slurm-"
OWNER_FILE = "owner"
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DAEMONS = ("slurmd", "slurmctld", "munged")  # stop order: node, controller, then auth


class SlurmClusterError(RuntimeError):
    """The cluster could not start (the message carries the daemons' log tails)."""


def _search_path() -> str:
    """PATH with the sbin folders added, where Debian puts the daemons."""
    return f"{os.environ.get('PATH', '')}:{SBIN_PATH}"


def slurm_installed() -> bool:
    """Whether the daemons and client commands this cluster needs are on this machine."""
    path = _search_path()
    needed = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scancel", "scontrol", "sinfo")
    return all(shutil.which(name, path=path) for name in needed)


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"--- {path.name}: (missing)"
    return "\n".join([f"--- {path.name}:", *text[-lines:]])


def clean_leftovers(base_dir: str | None = None) -> list[Path]:
    """Stop daemons of earlier runs whose test process died, and remove their scratch folders.

    Only folders carrying our owner file, and only processes whose command line names that
    folder, are touched; a folder whose owner process still lives belongs to another session.
    """
    cleaned: list[Path] = []
    for folder in sorted(Path(base_dir or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*")):
        owner = folder / OWNER_FILE
        if not owner.is_file() or owner_alive(owner.read_text()):
            continue
        for name in DAEMONS:
            pid_file = folder / f"{name}.pid"
            if pid_file.is_file():
                stop_pid(pid_file.read_text().strip(), str(folder), timeout=5.0)
        kill_job_processes(str(folder / "slurm.conf"))
        shutil.rmtree(folder, ignore_errors=True)
        cleaned.append(folder)
    return cleaned


class SlurmCluster:
    """munged + slurmctld + slurmd on 127.0.0.1 with one node that may oversubscribe the host."""

    def __init__(
        self,
        *,
        cpus: int = 8,
        memory_mb: int = 8192,
        node_name: str = "hpcflow1",
        base_dir: str | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
        kill_wait: int = 5,
    ) -> None:
        """Remember the shape of the cluster; `start()` does the work."""
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.node_name = node_name
        self.base_dir = base_dir
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.kill_wait = kill_wait
        self.scratch: Path | None = None
        self.ctld_port = 0
        self.slurmd_port = 0
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- paths and environment -------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        """The slurm.conf every client command must be pointed at (SLURM_CONF)."""
        return self._dir / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Variables to add to a client command's environment: SLURM_CONF and PATH."""
        return {"SLURM_CONF": str(self.conf_path), "PATH": _search_path()}

    @property
    def munge_socket(self) -> Path:
        """The private munge socket both daemons and clients authenticate through."""
        return self._dir / "munge" / "munge.socket"

    @property
    def _dir(self) -> Path:
        if self.scratch is None:
            raise SlurmClusterError("cluster not started")
        return self.scratch

    def run(
        self,
        *args: str,
        timeout: float = 30.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster; raise with its stderr on failure."""
        proc = subprocess.run(
            list(args),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise SlurmClusterError(
                f"{' '.join(args)} exited {proc.returncode}: "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc

    # -- start ------------------------------------------------------------------------------

    def start(self) -> None:
        """Write the config and key, start the three daemons, and wait for the node to be idle."""
        if self.scratch is not None:
            raise SlurmClusterError(f"cluster already started in {self.scratch}")
        if not slurm_installed():
            raise SlurmClusterError("Slurm is not installed (run scripts/slurm-setup.sh)")
        base = self.base_dir or tempfile.gettempdir()
        clean_leftovers(base)
        self.scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=base))
        try:
            self._write_files()
            self._start_daemons()
        except BaseException:
            self.stop()
            raise

    def _write_files(self) -> None:
        """Owner marker, munge key (mode 400), state folders and slurm.conf."""
        root = self._dir
        root.chmod(0o755)
        (root / OWNER_FILE).write_text(owner_token(os.getpid()))
        for sub in ("munge", "state", "spool"):
            (root / sub).mkdir(mode=0o755)
        (root / "munge").chmod(0o755)  # munged refuses a socket folder others cannot enter
        key = root / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self.ctld_port, self.slurmd_port = free_port(), free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = free_port()
        self.conf_path.write_text(self.render_conf())

    def render_conf(self) -> str:
        """slurm.conf for one node on loopback, no cgroups, no accounting database."""
        root = self._dir
        host = socket.gethostname().split(".")[0]
        lines = [
            "ClusterName=hpcflowtest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            # Jobs without --mem would otherwise take the whole node and run one at a time.
            "DefMemPerCPU=256",
            # The node may declare more CPUs/memory than this 2-core machine has.
            "SlurmdParameters=config_overrides",
            # Without it only a couple of batch jobs start every few seconds.
            "SchedulerParameters=batch_sched_delay=0",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={root / 'jobcomp.txt'}",
            # Finished jobs stay visible to squeue -t all and scontrol for an hour.
            "MinJobAge=3600",
            f"KillWait={self.kill_wait}",
            "ReturnToService=2",
            "MpiDefault=none",
            "MailProg=/bin/true",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd.log'}",
            f"NodeName={self.node_name} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        return "\n".join(lines) + "\n"

    def _daemon_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        """Start one daemon in the foreground as our child, in its own session (no Ctrl-C)."""
        out = (self._dir / f"{name}.out").open("wb")
        try:
            self._procs[name] = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._daemon_env(),
                cwd=self._dir,
                start_new_session=True,
            )
        finally:
            out.close()

    def _start_daemons(self) -> None:
        root = self._dir
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={root / 'munge.key'}",
                f"--pid-file={root / 'munged.pid'}",
                f"--log-file={root / 'munged.log'}",
                f"--seed-file={root / 'munge' / 'seed'}",
            ],
        )
        self._wait(lambda: self.munge_socket.exists(), "munged to open its socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf_path)])
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.node_name, "-f", str(self.conf_path)])
        self._wait(self.node_idle, f"node {self.node_name} to be idle in sinfo")

    def node_idle(self) -> bool:
        """Whether sinfo reports the node idle (responding, not drained)."""
        try:
            proc = self.run(
                "sinfo", "-h", "-N", "-n", self.node_name, "-o", "%T", timeout=5, check=False
            )
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0 and proc.stdout.strip() == "idle"

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        """Poll `ready()` until true; fail with log tails on timeout or if a daemon exits."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            dead = [n for n, p in self._procs.items() if p.poll() is not None]
            if dead:
                raise SlurmClusterError(
                    self._failure(f"{', '.join(dead)} exited while waiting for {what}")
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise SlurmClusterError(
                    self._failure(f"timed out after {self.start_timeout:.0f} s waiting for {what}")
                )
            time.sleep(0.1)

    def _failure(self, message: str) -> str:
        root = self._dir
        logs = [f"{n}.{ext}" for n in reversed(DAEMONS) for ext in ("log", "out")]
        tails = [log_tail(root / name) for name in logs if (root / name).exists()]
        return "\n".join([f"Slurm cluster in {root}: {message}", *tails])

    # -- stop -------------------------------------------------------------------------------

    def controller_up(self) -> bool:
        """`scontrol ping` says slurmctld answers (squeue/scancel hang against a dead one)."""
        try:
            proc = self.run("scontrol", "ping", timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0 and "UP" in proc.stdout

    def job_ids(self, states: str = "all") -> list[str]:
        """Ids of the cluster's jobs in these squeue states."""
        proc = self.run("squeue", "-h", "-t", states, "-o", "%A", timeout=10)
        return proc.stdout.split()

    def cancel_all(self) -> None:
        """scancel every live job and wait (bounded) until none runs or completes."""
        ids = self.job_ids("pending,running,suspended,completing,configuring")
        if ids:
            self.run("scancel", *ids, timeout=10, check=False)
        deadline = time.monotonic() + self.kill_wait + 10
        while self.job_ids("running,completing,configuring") and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self) -> None:
        """Cancel jobs, stop the daemons by their pid files, and remove the scratch folder."""
        if self.scratch is None:
            return
        root = self.scratch
        try:
            if self._procs.get("slurmctld") and self.controller_up():
                self.cancel_all()
        except (subprocess.TimeoutExpired, SlurmClusterError):
            pass  # a wedged controller must not keep the daemons alive
        for name in DAEMONS:
            self._stop_daemon(name)
        kill_job_processes(str(self.conf_path))
        self._procs.clear()
        self.scratch = None
        shutil.rmtree(root, ignore_errors=True)

    def _stop_daemon(self, name: str) -> None:
        """SIGTERM the pid in the daemon's pid file (or our child), SIGKILL after a timeout."""
        pid_file = self._dir / f"{name}.pid"
        proc = self._procs.get(name)
        pids: set[str] = set()
        if pid_file.is_file():
            pids.add(pid_file.read_text().strip())
        if proc is not None and proc.poll() is None:
            pids.add(str(proc.pid))
        for pid in pids:
            stop_pid(pid, str(self._dir), timeout=self.stop_timeout)
        if proc is not None:
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=5)

    def pids(self) -> list[int]:
        """Pids of the running daemons (for tests that check the cluster stops)."""
        return [p.pid for p in self._procs.values() if alive(p.pid)]

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
