// Package slurm_test runs the Slurm deployment (submit.sh and its two batch scripts) on a
// single-node Slurm cluster that it starts on this machine, on loopback only.
package slurm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	mrand "math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/testmodels"
)

// need skips the test with msg, except under CI, where it fails.
func need(t *testing.T, ok bool, msg string) {
	t.Helper()
	if !ok {
		testmodels.RequireOrSkip(t, errors.New(msg))
	}
}

// TestSlurm submits 4 calibration shards of the tiny model and the dependent merge through
// submit.sh, and checks the merged statistics against one run over all the data. The 44
// samples make shards of 11, batches of the single run (batch 11), so that the runs agree to
// float64 rounding even where onnxruntime sums each batch in float32.
func TestSlurm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Slurm cluster (-short)")
	}
	var missing []string
	for _, p := range []string{"munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol", "scancel"} {
		if _, err := lookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	need(t, len(missing) == 0, fmt.Sprintf("Slurm is not installed (no %s); run .ci/setup-slurm", strings.Join(missing, ", ")))
	need(t, os.Geteuid() == 0, "the Slurm daemons must run as root")
	lib, err := ort.FindLibrary("")
	need(t, err == nil, fmt.Sprint(err))

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // munged wants its socket's folders searchable
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "convpca")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/convpca/convpca/cmd/convpca").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	model := testmodels.Path("tiny/conv_pad_stride.onnx")
	data := filepath.Join(dir, "x.npy")
	writeData(t, data, 44)

	c := startCluster(t, filepath.Join(dir, "cluster"))
	work := filepath.Join(dir, "work")
	env := append(c.env(), "CONVPCA="+bin, "CONVPCA_ORT_LIB="+lib, "SHARDS=4", "CONVPCA_ARGS=--provider cpu --threads 1 --batch 11")
	compressed := ""
	if help, _ := exec.Command(bin, "compress", "--help").Output(); bytes.Contains(help, []byte("--stats")) {
		compressed = filepath.Join(dir, "compressed.onnx")
		env = append(env, "OUT="+compressed, "COMPRESS_ARGS=--provider cpu")
	} else {
		t.Log("convpca compress has no --stats yet: the batch job merges only")
	}
	submit := exec.Command("./submit.sh", model, data, work)
	submit.Env = env
	out, err := submit.Output()
	if err != nil {
		t.Fatalf("submit.sh: %v\n%s", err, stderrOf(err))
	}
	var array, merge string
	if _, err := fmt.Sscan(string(out), &array, &merge); err != nil {
		t.Fatalf("submit.sh printed %q: %v", out, err)
	}
	t.Cleanup(func() { c.run("scancel", array, merge) }) // before the daemons stop, on failure
	t.Logf("submitted job array %s and merge job %s", array, merge)

	start := time.Now()
	state := c.waitJob(t, merge, 5*time.Minute)
	t.Logf("merge job %s after %.1fs", state, time.Since(start).Seconds())
	if state != "COMPLETED" {
		c.dumpLogs(t, work)
		t.Fatalf("merge job %s ended %s", merge, state)
	}
	tasks := c.run("scontrol", "show", "job", "-o", array)
	if n := strings.Count(tasks, "JobState=COMPLETED"); n != 4 {
		c.dumpLogs(t, work)
		t.Fatalf("%d of 4 array tasks completed:\n%s", n, tasks)
	}

	single := filepath.Join(dir, "single.cps")
	if out, err := exec.Command(bin, "calibrate", model, "--calib", data, "--out", single, "--provider", "cpu", "--batch", "11", "--ort-lib", lib).CombinedOutput(); err != nil {
		t.Fatalf("single run: %v\n%s", err, out)
	}
	want, err := calib.ReadStats(single)
	if err != nil {
		t.Fatal(err)
	}
	got, err := calib.ReadStats(filepath.Join(work, "all.cps"))
	if err != nil {
		t.Fatal(err)
	}
	if got.ShardCount != 4 || !slices.Equal(got.ShardsSeen, []int{0, 1, 2, 3}) || got.ModelHash != want.ModelHash {
		t.Errorf("merged file holds shards %v of %d, model %.12s (single run: %.12s)", got.ShardsSeen, got.ShardCount, got.ModelHash, want.ModelHash)
	}
	if got.Result.Samples != 44 || len(got.Result.Stats) != len(want.Result.Stats) || len(want.Result.Stats) == 0 {
		t.Fatalf("merged %d samples of %d tensors, single run %d of %d", got.Result.Samples, len(got.Result.Stats), want.Result.Samples, len(want.Result.Stats))
	}
	for name, w := range want.Result.Stats {
		g := got.Result.Stats[name]
		if g == nil || g.Count != w.Count {
			t.Fatalf("tensor %s: merged %+v, single run count %d", name, g, w.Count)
		}
		pg, err := calib.Eigen(g.Covariance())
		if err != nil {
			t.Fatal(err)
		}
		pw, err := calib.Eigen(w.Covariance())
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range pw.Values {
			if math.Abs(pg.Values[i]-v) > 1e-9*math.Abs(v)+1e-12*pw.Values[0] {
				t.Errorf("tensor %s: eigenvalue %d is %.17g, single run %.17g", name, i, pg.Values[i], v)
			}
		}
	}
	if compressed != "" {
		checkCompressed(t, bin, lib, model, single, compressed, data)
	}
}

// checkCompressed compares the model the batch job compressed with one compressed from the
// single run's statistics: outputs within 1e-5 relative.
func checkCompressed(t *testing.T, bin, lib, model, single, compressed, data string) {
	t.Helper()
	ref := filepath.Join(filepath.Dir(compressed), "single.onnx")
	if out, err := exec.Command(bin, "compress", model, "--stats", single, "--out", ref, "--provider", "cpu", "--ort-lib", lib).CombinedOutput(); err != nil {
		t.Fatalf("compress --stats: %v\n%s", err, out)
	}
	a, b := infer(t, compressed, data), infer(t, ref, data)
	var d, m float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		m = math.Max(m, math.Abs(float64(b[i])))
	}
	if len(a) != len(b) || len(b) == 0 || d > 1e-5*m {
		t.Errorf("compressed models differ: %d and %d outputs, max difference %.3g of %.3g", len(a), len(b), d, m)
	}
}

func infer(t *testing.T, model, data string) []float32 {
	t.Helper()
	m, err := onnxio.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	r, err := dataset.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []float32
	opts := ort.Options{Runtime: ort.RuntimeOptions{Provider: ort.CPU}}
	if _, err := ort.Infer(m, r, nil, opts, func(b ort.Batch) error {
		out = append(out, b.Outputs[0].Data...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// writeData writes n random samples of the tiny model's input (3x9x9) as a float32 .npy file.
func writeData(t *testing.T, path string, n int) {
	t.Helper()
	rng := mrand.New(mrand.NewSource(7))
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, 3, 9, 9), }", n)
	for (10+len(header)+1)%64 != 0 {
		header += " "
	}
	buf := binary.LittleEndian.AppendUint16([]byte("\x93NUMPY\x01\x00"), uint16(len(header)+1))
	buf = append(buf, header+"\n"...)
	for range n * 3 * 9 * 9 {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(float32(rng.NormFloat64()+0.5)))
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// cluster is a single-node Slurm cluster of this machine: munged, slurmctld and slurmd, each
// listening on loopback only (munged on a Unix socket), with all state under dir.
type cluster struct {
	dir, conf string
}

// startCluster starts the daemons and waits until the node is idle. t.Cleanup stops them by
// their process ids, the last started first.
func startCluster(t *testing.T, dir string) *cluster {
	t.Helper()
	for _, d := range []string{"state", "spool"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := &cluster{dir: dir, conf: filepath.Join(dir, "slurm.conf")}
	key := make([]byte, 1024)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "munge.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "munge.socket")
	c.daemon(t, "munged", "munged", "--foreground", "--force", "--socket="+socket,
		"--key-file="+filepath.Join(dir, "munge.key"), "--pid-file="+filepath.Join(dir, "munged.pid"),
		"--log-file="+filepath.Join(dir, "munged.log"), "--seed-file="+filepath.Join(dir, "munged.seed"))
	waitFor(t, 20*time.Second, "munged socket", func() bool { _, err := os.Stat(socket); return err == nil })

	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ = strings.Cut(host, ".")
	ports := freePorts(t, 2)
	conf := fmt.Sprintf(`# A single-node cluster for convpca's Slurm test: loopback only, no cgroups, no accounting.
ClusterName=convpcatest
SlurmctldHost=%[1]s(127.0.0.1)
SlurmctldPort=%[3]d
SlurmdPort=%[4]d
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=%[5]s
CredType=cred/munge
StateSaveLocation=%[2]s/state
SlurmdSpoolDir=%[2]s/spool
SlurmctldPidFile=%[2]s/slurmctld.pid
SlurmdPidFile=%[2]s/slurmd.pid
SlurmctldLogFile=%[2]s/slurmctld.log
SlurmdLogFile=%[2]s/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
NodeName=%[1]s NodeAddr=127.0.0.1 CPUs=2 RealMemory=500 State=UNKNOWN
PartitionName=debug Nodes=%[1]s Default=YES MaxTime=INFINITE State=UP
`, host, dir, ports[0], ports[1], socket)
	if err := os.WriteFile(c.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c.daemon(t, "slurmctld", "slurmctld", "-D", "-f", c.conf)
	c.daemon(t, "slurmd", "slurmd", "-D", "-f", c.conf, "-N", host)
	ok := false
	deadline := time.Now().Add(60 * time.Second)
	for !ok && time.Now().Before(deadline) {
		ok = strings.TrimSpace(c.run("sinfo", "-h", "-N", "-o", "%t")) == "idle"
		if !ok {
			time.Sleep(500 * time.Millisecond)
		}
	}
	if !ok {
		c.dumpLogs(t, "")
		t.Fatalf("the node did not become idle in 60s: sinfo says %q", c.run("sinfo", "-h", "-N", "-o", "%t %E"))
	}
	return c
}

// env is the environment for Slurm commands of this cluster.
func (c *cluster) env() []string { return append(os.Environ(), "SLURM_CONF="+c.conf) }

// daemon starts a daemon in the foreground, its output in dir/name.out, and stops it (SIGTERM,
// then SIGKILL after 15s) when the test ends.
func (c *cluster) daemon(t *testing.T, name, prog string, args ...string) {
	t.Helper()
	path, err := lookPath(prog)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(c.dir, name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = c.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		defer logf.Close()
		select {
		case err := <-done:
			t.Logf("%s (pid %d) had already exited: %v", name, cmd.Process.Pid, err)
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Logf("%s (pid %d) ignored SIGTERM; killing it", name, cmd.Process.Pid)
			cmd.Process.Kill()
			<-done
		}
	})
}

// run runs a Slurm command against the cluster and returns its output, or the error text.
func (c *cluster) run(prog string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path, err := lookPath(prog)
	if err != nil {
		return err.Error()
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = c.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s %s: %v: %s", prog, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitJob waits for a job to end and returns its final state ("TIMEOUT waiting" if it did not).
func (c *cluster) waitJob(t *testing.T, id string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	state := ""
	for time.Now().Before(deadline) {
		out := c.run("scontrol", "show", "job", "-o", id)
		if _, rest, ok := strings.Cut(out, "JobState="); ok {
			state, _, _ = strings.Cut(rest, " ")
		}
		switch state {
		case "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "":
			time.Sleep(time.Second)
			continue
		}
		return state
	}
	return fmt.Sprintf("still %s after %v", state, limit)
}

// dumpLogs logs the daemons' and the jobs' output, to explain a failure.
func (c *cluster) dumpLogs(t *testing.T, work string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	outs, _ := filepath.Glob(filepath.Join(c.dir, "*.out"))
	files = append(files, outs...)
	if work != "" {
		logs, _ := filepath.Glob(filepath.Join(work, "logs", "*"))
		files = append(files, logs...)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("--- %s:\n%s", f, b)
	}
	t.Logf("--- squeue:\n%s", c.run("squeue", "-a"))
}

// freePorts returns n TCP ports of 127.0.0.1 that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("no %s after %v", what, limit)
}

// lookPath finds a program on PATH or in the sbin folders, where Debian puts the daemons.
func lookPath(prog string) (string, error) {
	if p, err := exec.LookPath(prog); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, prog)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", prog)
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}
