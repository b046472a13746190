package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
)

// Exit codes. A configuration kmirror cannot use exits exitConfig (EX_CONFIG in sysexits.h):
// restarting will not fix it, and the systemd unit says so (RestartPreventExitStatus=78), so a
// typo is reported once instead of every RestartSec. Everything else that fails exits
// exitFailure, which systemd restarts.
const (
	exitFailure = 1
	exitConfig  = 78
)

// defaultConfigPath is where every subcommand reads its configuration unless --config names
// another file (the systemd units and the container image install it there).
const defaultConfigPath = "/etc/kmirror/kmirror.yaml"

// exitError carries an exit code for an error already reported.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// configError is an error in the configuration (its file, keys, values or the files it names):
// the process exits exitConfig.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// reportExit reports err (unless already reported) on stderr and returns the process's exit code.
func reportExit(err error) int {
	var exit exitError
	if errors.As(err, &exit) {
		return exit.code
	}
	fmt.Fprintln(os.Stderr, "kmirror:", err)
	var cfgErr configError
	if errors.As(err, &cfgErr) {
		return exitConfig
	}
	return exitFailure
}

type configFlags struct {
	path string
	set  []string
}

func (f *configFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.path, "config", "c", defaultConfigPath,
		"YAML configuration file (see configs/kmirror.yaml); --config '' reads the KMIRROR_* environment and defaults alone")
	cmd.Flags().StringArrayVar(&f.set, "set", nil, "override a key, e.g. --set producer.compression=zstd (repeatable)")
}

// load reads and validates the configuration, and checks that the files it names (CA, client
// certificate, password file) can be used now rather than when first connecting. Any error is a
// configError.
func (f *configFlags) load() (*config.Config, error) {
	cfg, err := config.Load(f.path, f.set)
	if err != nil {
		if f.path == defaultConfigPath {
			err = fmt.Errorf("%w (the default --config; name another file with --config FILE)", err)
		}
		return nil, configError{err}
	}
	for _, c := range []struct {
		key string
		cfg config.Cluster
	}{{"source", cfg.Source}, {"target", cfg.Target}} {
		if _, err := cluster.New(c.key, c.cfg); err != nil {
			return nil, configError{err}
		}
	}
	return cfg, nil
}
