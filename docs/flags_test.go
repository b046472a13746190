package docs

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The pages also name kmirror commands in running text (`kmirror failover --group G --wait 5m`),
// which no test runs. TestKmirrorCommandsOfThePagesExist checks each of them, and each kmirror
// command of the sh blocks, against the binary's own help: the subcommand exists and every
// --flag named is one of its flags.

var (
	inlineKmirror = regexp.MustCompile("`(?:bin/)?kmirror ([a-z][^`]*)`")
	flagName      = regexp.MustCompile(`(?:^|[\s\[|])(--[a-z][a-z0-9-]*)`)
	helpFlag      = regexp.MustCompile(`(?m)^\s+(?:-[a-z], )?(--[a-z][a-z0-9-]*)`)
	// notCommands are backticked phrases that start with "kmirror " and are log messages, not
	// commands.
	notCommands = []string{"kmirror stopped with an error"}
)

func TestKmirrorCommandsOfThePagesExist(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds kmirror")
	}
	bin := filepath.Join(t.TempDir(), "kmirror")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/kmirror").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	helps := map[string]string{}
	help := func(path []string) (string, bool) {
		k := strings.Join(path, " ")
		if h, ok := helps[k]; ok {
			return h, h != ""
		}
		out, err := exec.Command(bin, append(path, "--help")...).CombinedOutput()
		h := string(out)
		// An unknown subcommand of a command that takes arguments prints the parent's help:
		// the usage line must name the whole path.
		if err != nil || !strings.Contains(h, "kmirror "+k) {
			h = ""
		}
		helps[k] = h
		return h, h != ""
	}
	root, _ := help(nil)
	// use: the kmirror command line (after "kmirror ") of page:line.
	type use struct{ where, args string }
	var uses []use
	_, ps := pages(t)
	for _, p := range ps {
		for i, l := range p.lines {
			for _, m := range inlineKmirror.FindAllStringSubmatch(l, -1) {
				if slices.Contains(notCommands, "kmirror "+m[1]) {
					continue
				}
				uses = append(uses, use{p.path + ":" + strconv.Itoa(i+1), m[1]})
			}
		}
	}
	for _, c := range allCommands(t) {
		for _, l := range strings.Split(c.key(), " | ") {
			f := strings.Fields(l)
			for j, w := range f {
				// kmirror as the command word, not an argument (journalctl -u kmirror).
				first := j == 0 || slices.Contains([]string{"--", "&&", ";"}, f[j-1])
				if (w == "kmirror" || w == "bin/kmirror") && first && j+1 < len(f) {
					uses = append(uses, use{c.page + ":" + strconv.Itoa(c.line), strings.Join(f[j+1:], " ")})
					break
				}
			}
		}
	}
	if len(uses) < 60 {
		t.Fatalf("only %d kmirror commands found in the pages", len(uses))
	}
	for _, u := range uses {
		words := strings.Fields(u.args)
		var path []string
		for _, w := range words {
			if !regexp.MustCompile(`^[a-z][a-z0-9]*$`).MatchString(w) {
				break
			}
			if _, ok := help(append(slices.Clone(path), w)); !ok {
				break // an argument (a file name), not a subcommand
			}
			path = append(path, w)
		}
		if len(path) == 0 {
			if w := words[0]; !strings.Contains(root, "  "+w+" ") {
				t.Errorf("%s: `kmirror %s`: kmirror has no command %q", u.where, u.args, w)
			}
			continue
		}
		h, _ := help(path)
		var known []string
		for _, m := range helpFlag.FindAllStringSubmatch(h, -1) {
			known = append(known, m[1])
		}
		for _, m := range flagName.FindAllStringSubmatch(" "+u.args, -1) {
			if !slices.Contains(known, m[1]) {
				t.Errorf("%s: `kmirror %s`: %s is not a flag of kmirror %s (it has %v)", u.where, u.args, m[1], strings.Join(path, " "), known)
			}
		}
	}
}
