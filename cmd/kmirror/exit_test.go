package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExitCodesTellAConfigurationErrorFromARuntimeFailure: a configuration kmirror cannot use
// exits 78 (EX_CONFIG; the systemd unit's RestartPreventExitStatus) whatever the subcommand, so
// systemd does not restart a typo every RestartSec; a failure at run time exits 1 and is
// restarted. Without --config the default file is read, and its absence is named.
func TestExitCodesTellAConfigurationErrorFromARuntimeFailure(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte("source: {bootstrap: [a:1]}\ntarget: {bootstrap: [b:1]}\nproducer: {compresion: zstd}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missingCA := filepath.Join(dir, "missing-ca.yaml")
	if err := os.WriteFile(missingCA, []byte("source: {bootstrap: [a:1], tls: {enabled: true, ca_file: "+
		filepath.Join(dir, "nope.pem")+"}}\ntarget: {bootstrap: [b:1]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A runtime failure: the telemetry address is taken by another process.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	runtime := filepath.Join(dir, "busy.yaml")
	if err := os.WriteFile(runtime, []byte("source: {bootstrap: [127.0.0.1:1]}\ntarget: {bootstrap: [127.0.0.1:2]}\ntelemetry: {listen: "+
		busy.Addr().String()+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		says string
	}{
		{"run with a typo'd key", []string{"run", "--config", typo}, 78, "producer.compresion"},
		{"validate with a typo'd key", []string{"validate", "--config", typo}, 78, "producer.compresion"},
		{"run with a CA file that does not exist", []string{"run", "--config", missingCA}, 78, "source.tls.ca_file"},
		{"run without --config reads the default file", []string{"run"}, 78, "/etc/kmirror/kmirror.yaml"},
		{"failover without --config reads the default file", []string{"failover", "--group", "app"}, 78, "/etc/kmirror/kmirror.yaml"},
		{"offsets translate without --config", []string{"offsets", "translate", "--group", "app"}, 78, "/etc/kmirror/kmirror.yaml"},
		{"topics plan without --config", []string{"topics", "plan"}, 78, "/etc/kmirror/kmirror.yaml"},
		{"run whose telemetry address is taken", []string{"run", "--config", runtime}, 1, busy.Addr().String()},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := exec.Command(bin, c.args...).CombinedOutput()
			if code := exitCode(err); code != c.code || !strings.Contains(string(out), c.says) {
				t.Fatalf("kmirror %s: exit %d, want %d and %q in:\n%s", strings.Join(c.args, " "), code, c.code, c.says, out)
			}
		})
	}
}
