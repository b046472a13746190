package docs

// Every command the pages show is either run by a test or exempted here with its reason.
//
// A command is a line (continuations and shell functions joined, comments dropped) of a fenced
// block marked sh, bash or shell, or a "$ " line of a console block, in README.md or
// docs/*.md. TestEveryDocCommandIsCovered fails for a command that is neither run (by the
// walk-through, by a test of run_test.go, or by a named e2e test) nor in exempt; and for an
// entry of exempt, hermetic or e2eRun that no page shows any more. Commands are compared with
// their whitespace collapsed, so aligning comments does not matter; anything else does.

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// docCommand is one command shown on a page.
type docCommand struct {
	page string
	line int
	// text is the command as a shell runs it: continuations and functions joined by newlines,
	// comments dropped.
	text string
	// walkthrough: the command is in the README block scripts/walkthrough.sh runs.
	walkthrough bool
}

// key is the command with its whitespace collapsed: what the tables of this file name.
func (c docCommand) key() string {
	return strings.Join(strings.Fields(strings.ReplaceAll(c.text, "\\\n", " ")), " ")
}

// The languages a fence may name; a block of another language fails the test, so that a new
// kind of block is looked at before commands hide in it.
var (
	shellFences = map[string]bool{"sh": true, "bash": true, "shell": true}
	otherFences = map[string]bool{"": true, "yaml": true, "json": true, "console": true}
	// looksLikeCommand flags a line of an unlabelled (output) block that is a command.
	looksLikeCommand = regexp.MustCompile(`^(\$ |(bin/)?kmirror (run|validate|status|migrate|topics|offsets|failover|verify|heartbeats|config|demo|version)\b|make [a-z]|(oc|kubectl|kcat|curl|systemctl|journalctl|podman|helm) )`)
	shellFunction    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\(\) *\{`)
)

// stripComment drops a shell comment: a '#' at the start of a word, outside quotes.
func stripComment(l string) string {
	var quote rune
	for i, r := range l {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			return strings.TrimRight(l[:i], " \t")
		}
	}
	return strings.TrimRight(l, " \t")
}

// commands returns the commands of a page, and an error line for each block whose language is
// not known or whose unlabelled lines look like commands.
func (p page) commands() (cmds []docCommand, problems []string) {
	inBlock, shell, console, marked, walk := false, false, false, false, false
	var pending []string // a command continued over several lines
	pendingLine, depth := 0, 0
	flush := func() {
		if len(pending) > 0 {
			cmds = append(cmds, docCommand{page: p.path, line: pendingLine, text: strings.Join(pending, "\n"), walkthrough: walk})
		}
		pending, depth = nil, 0
	}
	for i, raw := range p.lines {
		trimmed := strings.TrimSpace(raw)
		if !inBlock && strings.HasPrefix(trimmed, "<!-- walkthrough") {
			marked = true
		}
		if strings.HasPrefix(trimmed, "```") {
			if inBlock {
				flush()
				inBlock, shell, console, walk = false, false, false, false
				continue
			}
			lang := strings.TrimPrefix(trimmed, "```")
			inBlock, shell, console = true, shellFences[lang], lang == "console"
			walk = shell && marked
			marked = false
			if !shell && !otherFences[lang] {
				problems = append(problems, p.path+":"+strconv.Itoa(i+1)+": a fenced block of language "+lang+": mark shell commands sh (and add their coverage), or add the language to otherFences")
			}
			continue
		}
		if !inBlock {
			continue
		}
		if !shell {
			if console && strings.HasPrefix(trimmed, "$ ") {
				cmds = append(cmds, docCommand{page: p.path, line: i + 1, text: stripComment(strings.TrimPrefix(trimmed, "$ "))})
			} else if !console && looksLikeCommand.MatchString(trimmed) {
				problems = append(problems, p.path+":"+strconv.Itoa(i+1)+": "+trimmed+": a command in a block not marked sh (its commands would escape the test)")
			}
			continue
		}
		l := stripComment(trimmed)
		if l == "" && len(pending) == 0 {
			continue
		}
		if len(pending) == 0 {
			pendingLine = i + 1
		}
		if shellFunction.MatchString(l) {
			depth++
		}
		if depth > 0 && l == "}" {
			depth--
		}
		if cont, ok := strings.CutSuffix(l, "\\"); ok {
			pending = append(pending, strings.TrimRight(cont, " ")+" \\")
			continue
		}
		if l != "" {
			pending = append(pending, l)
		}
		if depth == 0 {
			flush()
		}
	}
	return cmds, problems
}

// allCommands returns the commands of README.md and docs/*.md.
func allCommands(t *testing.T) []docCommand {
	t.Helper()
	_, ps := pages(t)
	var out []docCommand
	for _, p := range ps {
		cmds, problems := p.commands()
		for _, pr := range problems {
			t.Error(pr)
		}
		out = append(out, cmds...)
	}
	return out
}

// e2eRun names, for a command that needs real brokers, the e2e test that runs it; that test
// must say which page's command it runs (its source names the page).
var e2eRun = map[string]struct{ test, page string }{
	"kcat -C -b us-kafka:9092 -t kmirror.heartbeats.europe -o -1 -e -q -f '%k %s\\n'": {"TestActiveActiveHeartbeats", "docs/heartbeats.md"},
}

// exemption is a command no test runs, why, and what is checked instead: that what it names
// (a file, a unit, an overlay, a make target, a release artefact) exists.
type exemption struct {
	why   string
	check func(t *testing.T)
}

// Checks shared by exemptions.
func exists(paths ...string) func(*testing.T) {
	return func(t *testing.T) {
		for _, p := range paths {
			if _, err := os.Stat(filepath.Join("..", p)); err != nil {
				t.Errorf("%s does not exist", p)
			}
		}
	}
}

func contains(path string, subs ...string) func(*testing.T) {
	return func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join("..", path))
		if err != nil {
			t.Error(err)
			return
		}
		for _, s := range subs {
			if !strings.Contains(string(b), s) {
				t.Errorf("%s does not contain %q", path, s)
			}
		}
	}
}

func all(checks ...func(*testing.T)) func(*testing.T) {
	return func(t *testing.T) {
		for _, c := range checks {
			c(t)
		}
	}
}

// treeContains: some file under dir holds each of subs.
func treeContains(dir string, subs ...string) func(*testing.T) {
	return func(t *testing.T) {
		var text strings.Builder
		err := filepath.WalkDir(filepath.Join("..", dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			text.Write(b)
			return err
		})
		if err != nil {
			t.Error(err)
		}
		for _, s := range subs {
			if !strings.Contains(text.String(), s) {
				t.Errorf("no file under %s holds %q", dir, s)
			}
		}
	}
}

// overlay: the kustomize overlay exists and `make deploy-check` renders and validates it
// (deploy/validate's targets).
func overlay(dir string) func(*testing.T) {
	return all(exists(dir+"/kustomization.yaml"), contains("deploy/validate/targets.go", `Path: "`+dir+`"`))
}

var (
	twoSites   = "deploy/kubernetes/overlays/openshift-two-sites"
	unit       = all(exists("deploy/systemd/kmirror.service", "deploy/systemd/kmirror@.service"), contains("Makefile", "install -D -m 0644 deploy/systemd/kmirror.service"))
	reloadUnit = all(unit, contains("deploy/systemd/kmirror.service", "ExecReload=/bin/kill -HUP $MAINPID"), contains("deploy/systemd/kmirror@.service", "ExecReload=/bin/kill -HUP $MAINPID"))
	// The release's file names, as build/release writes them.
	releaseFiles = all(contains("build/release/main.go", `"SHA256SUMS"`, `".cdx.json"`), contains("build/release/image.go", `"kmirror-%s-oci.tar"`),
		treeContains("build/release", `kmirror-%s-%s-%s`))
	oc           = "needs an OpenShift cluster (two, for the two-site overlays)"
	twoSitesBoth = all(overlay(twoSites+"/europe"), overlay(twoSites+"/us"))
	registry     = "needs a container registry and signing identity, which a test machine has not"
)

// exempt holds every command no test runs, with the reason.
var exempt = map[string]exemption{
	// README: the set-up commands.
	"make test": {"is the test suite this test is part of", all(contains("Makefile", "test:\n\t$(GO) test -race"), contains(".ci/run", "make test"))},

	// docs/install.md: a release.
	"VERSION=v0.2.0 ARCH=amd64":                                           {"sets the names of a published release's files", releaseFiles},
	"sha256sum --ignore-missing -c SHA256SUMS":                            {"needs a published release; `make release-check` runs `sha256sum --strict -c SHA256SUMS` on a snapshot", all(releaseFiles, contains("Makefile", "sha256sum --strict -c SHA256SUMS"))},
	"install -m 0755 kmirror-$VERSION-linux-$ARCH /usr/local/bin/kmirror": {"needs a published release", releaseFiles},
	"cosign verify-blob --bundle SHA256SUMS.sigstore.json --certificate-identity <identity from the release notes> --certificate-oidc-issuer <issuer from the release notes> SHA256SUMS": {registry, contains("docs/releasing.md", "cosign sign-blob --bundle dist/SHA256SUMS.sigstore.json")},
	"jq -r '.components[] | \"\\(.name) \\(.version)\"' kmirror-$VERSION-linux-$ARCH.cdx.json":                                                                                           {"needs a published release; build/release's TestReleaseArtefacts reads the SBOM", all(releaseFiles, contains("build/release/release_test.go", "func TestReleaseArtefacts"))},
	"podman pull quay.io/kmirror/kmirror:v0.2.0":                                           {registry, exists("Containerfile")},
	"podman run --rm quay.io/kmirror/kmirror:v0.2.0 version":                               {registry + "; `kmirror version` is run by TestOperateCommandsRun", exists("Containerfile")},
	"mkdir kmirror-oci && tar -xf kmirror-v0.2.0-oci.tar -C kmirror-oci":                   {"needs a published release", releaseFiles},
	"skopeo copy --all oci:kmirror-oci:v0.2.0 containers-storage:localhost/kmirror:v0.2.0": {"needs a container engine's storage", releaseFiles},
	"git checkout v0.2.0":                                              {"would change the tree under test", exists(".git")},
	"$EDITOR /etc/kmirror/kmirror.yaml":                                {"an editor, by hand", exists("configs/kmirror.yaml")},
	"systemctl daemon-reload && systemctl enable --now kmirror":        {"needs systemd as PID 1 and root; `make deploy-check` verifies the unit (systemd-analyze)", all(unit, contains("scripts/deploy-check.sh", "systemd-analyze verify"))},
	"journalctl -u kmirror -f":                                         {"needs systemd", unit},
	"systemctl reload kmirror":                                         {"needs systemd; the unit's ExecReload sends SIGHUP, which TestOperateCommandsRun sends by hand", reloadUnit},
	"systemctl daemon-reload":                                          {"needs systemd", unit},
	"systemctl enable --now kmirror@europe-to-us kmirror@us-to-europe": {"needs systemd", all(unit, exists("configs/active-active/europe-to-us.yaml", "configs/active-active/us-to-europe.yaml"))},
	"journalctl -u kmirror@us-to-europe":                               {"needs systemd", unit},
	"kmirror status": {"reads the default --config, /etc/kmirror/kmirror.yaml, which a test cannot write; the same command with --config and --addr is run by TestOperateCommandsRun",
		contains("cmd/kmirror/exit.go", `defaultConfigPath = "/etc/kmirror/kmirror.yaml"`)},
	"kmirror status --json": {"reads the default --config (see kmirror status); cmd/kmirror's TestSIGHUPReloadsAndStatusShowsThePartitions runs status --json with --addr and decodes it",
		all(contains("cmd/kmirror/exit.go", `defaultConfigPath = "/etc/kmirror/kmirror.yaml"`), contains("cmd/kmirror/reload_test.go", `"status", "--addr", listen, "--json"`))},

	// docs/monitoring.md: tracing into a real Jaeger.
	"scripts/jaeger/run.sh start": {"builds Jaeger from its Go module (minutes); CI runs it before the real-Jaeger trace tests", all(exists("scripts/jaeger/run.sh"), contains(".ci/run", "scripts/jaeger/run.sh start"))},
	"open http://127.0.0.1:16686": {"opens a browser", exists("scripts/jaeger/run.sh")},

	// docs/releasing.md.
	`git tag -a v0.2.0 -m "kmirror v0.2.0"`: {"would tag the repository under test", exists(".git")},
	"make release":                          {"minutes of both cores; CI runs `make release-check`, the same build as a snapshot, and verifies it", all(contains("Makefile", "release: release-tool"), contains(".ci/run", "make release-check"))},
	"(cd dist && sha256sum -c SHA256SUMS)":  {"after make release; `make release-check` runs it", contains("Makefile", "cd $(DIST) && sha256sum --strict -c SHA256SUMS")},
	"KMIRROR_DIST=$PWD/dist go -C build/release test -count=1 -run TestReleaseArtefacts .": {"after make release; `make release-check` runs it",
		all(contains("build/release/release_test.go", "func TestReleaseArtefacts"), contains("Makefile", "KMIRROR_DIST=$(abspath $(DIST)) $(GO) -C build/release test"))},
	"dist/kmirror-v0.2.0-linux-amd64 version":             {"after make release; TestReleaseArtefacts runs the binary's version", contains("build/release/release_test.go", "`kmirror version` of the amd64 one naming the version")},
	"crane push dist/oci quay.io/kmirror/kmirror:v0.2.0":  {registry, contains("build/release/image.go", "oci")},
	"crane digest quay.io/kmirror/kmirror:v0.2.0":         {registry, exists("Containerfile")},
	"cosign sign quay.io/kmirror/kmirror@sha256:<digest>": {registry, exists("Containerfile")},
	"cosign attest --type cyclonedx --predicate dist/kmirror-v0.2.0-linux-amd64.cdx.json quay.io/kmirror/kmirror@sha256:<digest>": {registry, releaseFiles},
	"cosign sign-blob --bundle dist/SHA256SUMS.sigstore.json dist/SHA256SUMS":                                                     {registry, releaseFiles},
	"crane digest registry.access.redhat.com/ubi9/ubi-micro:9.6":                                                                  {registry, contains("Containerfile", "ubi9/ubi-micro")},
	"make image": {"needs buildah and the UBI base image from a registry", all(contains("Makefile", "image:"), exists("Containerfile"))},
	"buildah manifest push --all kmirror:v0.2.0 docker://quay.io/kmirror/kmirror:v0.2.0-ubi": {registry, contains("Makefile", "--manifest kmirror:$(VERSION)")},

	// docs/install-openshift.md: two OpenShift clusters.
	"for c in europe us; do oc --context $c get csv -A | grep -Ei 'strimzi|amq-streams'; done": {oc, exists("deploy/validate/targets.go")},
	"eu=$(oc --context europe get ingresses.config/cluster -o jsonpath='{.spec.domain}')":      {oc, twoSitesBoth},
	"us=$(oc --context us get ingresses.config/cluster -o jsonpath='{.spec.domain}')":          {oc, twoSitesBoth},
	`sed -i "s/apps.europe.example.com/$eu/" deploy/kubernetes/overlays/openshift-two-sites/us/kmirror.yaml`: {"edits a committed file; checked: the file holds the placeholder it replaces",
		contains(twoSites+"/us/kmirror.yaml", "apps.europe.example.com")},
	`sed -i "s/apps.us.example.com/$us/" deploy/kubernetes/overlays/openshift-two-sites/europe/reverse-config/kmirror.yaml`: {"edits a committed file; checked: the file holds the placeholder it replaces",
		contains(twoSites+"/europe/reverse-config/kmirror.yaml", "apps.us.example.com")},
	"oc --context europe apply -k deploy/kubernetes/overlays/openshift-two-sites/europe":                {oc, overlay(twoSites + "/europe")},
	"oc --context us apply -k deploy/kubernetes/overlays/openshift-two-sites/us":                        {oc, overlay(twoSites + "/us")},
	"oc --context europe -n kafka-mirror wait kafka/europe-cluster --for=condition=Ready --timeout=15m": {oc, treeContains("deploy/kubernetes", "name: europe-cluster", "namespace: kafka-mirror")},
	"oc --context us -n kafka-mirror wait kafka/us-cluster --for=condition=Ready --timeout=15m":         {oc, treeContains("deploy/kubernetes", "name: us-cluster")},
	`copy() { oc --context "$1" -n kafka-mirror get secret "$3" -o jsonpath="{.data.${4//./\\.}}" | base64 -d >"/tmp/$3.$4" oc --context "$2" -n kafka-mirror create secret generic "$3" --from-file="$4=/tmp/$3.$4" --dry-run=client -o yaml | oc --context "$2" apply -f - rm -f "/tmp/$3.$4" }`: {oc, twoSitesBoth},
	"copy europe us europe-cluster-cluster-ca-cert ca.crt":                          {oc + "; checked: the us site's kmirror mounts that Secret", treeContains("deploy/kubernetes", "secretName: europe-cluster-cluster-ca-cert")},
	"copy europe us kmirror-source password":                                        {oc + "; checked: the us site's kmirror reads that Secret", treeContains("deploy/kubernetes", "kmirror-source")},
	"copy us europe us-cluster-cluster-ca-cert ca.crt":                              {oc + "; checked: the reverse flow mounts that Secret", contains("deploy/kubernetes/components/reverse-flow/deployment.yaml", "secretName: us-cluster-cluster-ca-cert")},
	"copy us europe kmirror-reverse-source password":                                {oc + "; checked: the reverse flow reads that Secret", contains("deploy/kubernetes/components/reverse-flow/deployment.yaml", "secretName: kmirror-reverse-source")},
	"oc --context us -n kafka-mirror rollout status deploy/kmirror":                 {oc, treeContains("deploy/kubernetes/base/kmirror", "kind: Deployment", "name: kmirror")},
	"oc --context us -n kafka-mirror logs deploy/kmirror | head":                    {oc, treeContains("deploy/kubernetes/base/kmirror", "kind: Deployment")},
	"oc --context us -n kafka-mirror scale deploy/kmirror --replicas=0":             {oc, treeContains("deploy/kubernetes/base/kmirror", "kind: Deployment")},
	"oc --context europe -n kafka-mirror scale deploy/kmirror-reverse --replicas=2": {oc, contains("deploy/kubernetes/components/reverse-flow/deployment.yaml", "name: kmirror-reverse")},
	"oc --context europe -n kafka-mirror exec deploy/kmirror-reverse -- kmirror failover --config /etc/kmirror/config/kmirror.yaml --group orders-app --wait 5m": {oc + "; checked: the reverse flow's configuration is mounted at that path",
		all(contains("deploy/kubernetes/components/reverse-flow/deployment.yaml", "name: kmirror-reverse", "/etc/kmirror/config"))},
	"oc --context europe -n kafka-mirror scale deploy/kmirror-reverse --replicas=0": {oc, contains("deploy/kubernetes/components/reverse-flow/deployment.yaml", "name: kmirror-reverse")},
	"oc --context us -n kafka-mirror scale deploy/kmirror --replicas=3":             {oc, treeContains("deploy/kubernetes/base/kmirror", "kind: Deployment")},
}

// TestEveryDocCommandIsCovered: each command shown is run by a test or exempted with a reason
// (and its exemption's check passes); no table names a command the pages no longer show.
func TestEveryDocCommandIsCovered(t *testing.T) {
	cmds := allCommands(t)
	if len(cmds) < 60 {
		t.Fatalf("only %d commands found in the pages: the extraction no longer matches them", len(cmds))
	}
	ran := map[string]string{}
	for test, list := range hermetic {
		for _, c := range list {
			ran[strings.Join(strings.Fields(c), " ")] = test
		}
	}
	shown := map[string]bool{}
	walkthrough := 0
	for _, c := range cmds {
		k := c.key()
		shown[k] = true
		switch {
		case c.walkthrough:
			walkthrough++
		case ran[k] != "":
		case e2eRun[k].test != "":
		default:
			e, ok := exempt[k]
			if !ok {
				t.Errorf("%s:%d: %q is run by no test and not exempted: run it in run_test.go (hermetic), name the e2e test that runs it in e2eRun, or add it to exempt with the reason", c.page, c.line, k)
				continue
			}
			if e.why == "" || e.check == nil {
				t.Errorf("%s:%d: the exemption of %q needs a reason and a check", c.page, c.line, k)
				continue
			}
			t.Run(c.page+":"+strconv.Itoa(c.line), e.check)
		}
	}
	if walkthrough == 0 {
		t.Error("README.md has no block after <!-- walkthrough: scripts/walkthrough.sh would run nothing")
	}
	contains(".ci/run", "scripts/walkthrough.sh")(t)
	contains("scripts/walkthrough.sh", "/^<!-- walkthrough/", "marked && /^```sh/")(t)
	for k, r := range e2eRun {
		if !shown[k] {
			t.Errorf("e2eRun names %q, which no page shows", k)
		}
		var src strings.Builder
		files, _ := filepath.Glob("../e2e/*_test.go")
		for _, f := range files {
			b, _ := os.ReadFile(f)
			src.Write(b)
		}
		if !strings.Contains(src.String(), "func "+r.test+"(") || !strings.Contains(src.String(), r.page) {
			t.Errorf("e2eRun: %s is not an e2e test that names %s", r.test, r.page)
		}
	}
	for k := range exempt {
		if !shown[k] {
			t.Errorf("exempt names %q, which no page shows (remove it, or fix it to the page's text)", k)
		}
	}
	for k, test := range ran {
		if !shown[k] {
			t.Errorf("%s runs %q, which no page shows", test, k)
		}
	}
}

// TestCommandExtraction pins the extraction rules on blocks of the kinds the pages hold.
func TestCommandExtraction(t *testing.T) {
	p := page{path: "x.md", lines: strings.Split(strings.Join([]string{
		"<!-- walkthrough -->",
		"```sh",
		"make kafka-up      # a comment",
		"echo '# not a comment' \\",
		"  --flag",
		"```",
		"  ```sh",
		"  f() { # define",
		"    echo a",
		"  }",
		"  # only a comment",
		"```",
		"```console",
		"$ kmirror version",
		"kmirror v1 (output)",
		"```",
		"```",
		"kmirror: an error message",
		"kmirror validate --config x.yaml",
		"```",
		"```toml",
		"```",
	}, "\n"), "\n")}
	cmds, problems := p.commands()
	var keys []string
	for _, c := range cmds {
		keys = append(keys, c.key())
	}
	want := []string{"make kafka-up", "echo '# not a comment' --flag", "f() { echo a }", "kmirror version"}
	if strings.Join(keys, "|") != strings.Join(want, "|") {
		t.Errorf("commands %q, want %q", keys, want)
	}
	if !cmds[0].walkthrough || !cmds[1].walkthrough || cmds[2].walkthrough {
		t.Errorf("only the block after the marker is the walk-through: %+v", cmds)
	}
	if len(problems) != 2 || !strings.Contains(problems[0], "kmirror validate") || !strings.Contains(problems[1], "toml") {
		t.Errorf("problems %q, want the command in an unmarked block and the unknown language", problems)
	}
}
