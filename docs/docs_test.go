// Package docs holds kmirror's user documentation (Markdown) and the tests that keep it usable:
// every relative link in README.md and docs/*.md leads to a file that exists (and to a heading
// that exists, when it names one), every page is reachable from the README and the index, the
// README stays a short door to these pages, its quickstart shows configs/minimal.yaml as it is,
// its benchmark figures are those of the newest run in benchmarks/results/, and every command a
// page shows in a sh block is run by a test or exempted with its reason (commands_test.go; the
// hermetic runs are in run_test.go and migrate_run_test.go), and troubleshooting.md shows every
// warning and error the code logs, every validate --connect check and every setting refused for
// another (troubleshooting_test.go).
//
// The package has no Go code of its own: it exists for these tests.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// readmeMaxLines bounds the README: it says what kmirror is, how to install and try it, and
// links the rest. Anything longer belongs on a page under docs/.
const readmeMaxLines = 220

// page is one Markdown file, read once.
type page struct {
	path  string // relative to the repository root, slash-separated
	lines []string
}

func readPage(t *testing.T, root, rel string) page {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return page{path: rel, lines: strings.Split(string(b), "\n")}
}

// pages returns README.md and every docs/**/*.md.
func pages(t *testing.T) (root string, ps []page) {
	t.Helper()
	root = ".."
	ps = append(ps, readPage(t, root, "README.md"))
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".md") {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err == nil {
			ps = append(ps, readPage(t, root, filepath.ToSlash(rel)))
		}
		return err
	})
	if err != nil || len(ps) == 1 {
		t.Fatalf("no docs/**/*.md (%v)", err)
	}
	return root, ps
}

var (
	linkRE       = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)\)`)
	inlineCodeRE = regexp.MustCompile("`[^`]*`")
)

// links returns the link targets of a page outside fenced code blocks and inline code, with the
// line each is on.
func (p page) links() (targets []string, lines []int) {
	fenced := false
	for i, l := range p.lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		// A link whose text is inline code ([`x`](y)) keeps its target: drop the code only.
		l = inlineCodeRE.ReplaceAllString(l, "code")
		for _, m := range linkRE.FindAllStringSubmatch(l, -1) {
			targets = append(targets, m[1])
			lines = append(lines, i+1)
		}
	}
	return targets, lines
}

// anchors returns the anchors GitHub gives the page's headings: lower case, punctuation other
// than '-' and '_' dropped, spaces turned into '-', a repeated one suffixed -1, -2, ...
func (p page) anchors() map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	fenced := false
	for _, l := range p.lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(l, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			seen[a] = n + 1
			a = a + "-" + strconv.Itoa(n)
		} else {
			seen[a] = 1
		}
		out[a] = true
	}
	return out
}

// TestRelativeLinksResolve fails for a relative link in README.md or docs/*.md whose file does
// not exist, or whose #anchor names no heading of the Markdown page it points to.
func TestRelativeLinksResolve(t *testing.T) {
	root, ps := pages(t)
	anchors := map[string]map[string]bool{}
	anchorsOf := func(rel string) map[string]bool {
		if a, ok := anchors[rel]; ok {
			return a
		}
		a := readPage(t, root, rel).anchors()
		anchors[rel] = a
		return a
	}
	checked := 0
	for _, p := range ps {
		targets, lines := p.links()
		for i, target := range targets {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			rel := p.path
			if file != "" {
				rel = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(p.path), file)))
				if strings.HasPrefix(rel, "../") {
					t.Errorf("%s:%d: link %q leaves the repository", p.path, lines[i], target)
					continue
				}
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel))); err != nil {
					t.Errorf("%s:%d: link %q: %s does not exist", p.path, lines[i], target, rel)
					continue
				}
			}
			checked++
			if anchor == "" || !strings.HasSuffix(rel, ".md") {
				continue
			}
			if !anchorsOf(rel)[anchor] {
				t.Errorf("%s:%d: link %q: %s has no heading with the anchor #%s", p.path, lines[i], target, rel, anchor)
			}
		}
	}
	if checked < 50 {
		t.Fatalf("only %d relative links found: the link pattern no longer matches the pages", checked)
	}
}

// TestAnchorsFollowGitHub checks the anchor rule itself on headings of the kinds the pages use.
func TestAnchorsFollowGitHub(t *testing.T) {
	p := page{lines: []string{
		"# Set-up: two commands",
		"## Try it on your machine, with real Kafka",
		"## The run of 2026-12-02 (latest)",
		"## Autoscaling (KEDA)",
		"## What `make bench` measures",
		"```",
		"# not a heading",
		"```",
		"## Tests",
		"### Tests",
	}}
	got := p.anchors()
	for _, want := range []string{"set-up-two-commands", "try-it-on-your-machine-with-real-kafka",
		"the-run-of-2026-12-02-latest", "autoscaling-keda", "what-make-bench-measures", "tests", "tests-1"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("a line in a code block was taken for a heading")
	}
}

// TestReadmeIsShort keeps the README a door, not the house.
func TestReadmeIsShort(t *testing.T) {
	p := readPage(t, "..", "README.md")
	if n := len(p.lines); n > readmeMaxLines {
		t.Errorf("README.md has %d lines, at most %d: move the detail to a page under docs/ and link it", n, readmeMaxLines)
	}
}

// TestEveryPageIsLinked fails for a docs/*.md page that neither the README nor the index
// (docs/README.md) links: a page nobody can find.
func TestEveryPageIsLinked(t *testing.T) {
	_, ps := pages(t)
	linked := func(p page) []string {
		targets, _ := p.links()
		var out []string
		for _, tg := range targets {
			file, _, _ := strings.Cut(tg, "#")
			out = append(out, filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(p.path), file))))
		}
		return out
	}
	var readme, index []string
	for _, p := range ps {
		switch p.path {
		case "README.md":
			readme = linked(p)
		case "docs/README.md":
			index = linked(p)
		}
	}
	for _, p := range ps {
		if p.path == "README.md" || p.path == "docs/README.md" {
			continue
		}
		if !slices.Contains(readme, p.path) {
			t.Errorf("README.md does not link %s", p.path)
		}
		if !slices.Contains(index, p.path) {
			t.Errorf("docs/README.md does not link %s", p.path)
		}
	}
}

// section returns the lines of the README section whose heading starts with title, up to the
// next heading of level 2.
func section(t *testing.T, p page, title string) []string {
	t.Helper()
	for i, l := range p.lines {
		if strings.HasPrefix(l, "## "+title) {
			end := len(p.lines)
			for j := i + 1; j < len(p.lines); j++ {
				if strings.HasPrefix(p.lines[j], "## ") {
					end = j
					break
				}
			}
			return p.lines[i+1 : end]
		}
	}
	t.Fatalf("%s has no section %q", p.path, title)
	return nil
}

// TestQuickstartShowsTheMinimalConfiguration: the YAML block of the README's quickstart is
// configs/minimal.yaml as committed, so what a reader copies is what `validate` was run on.
func TestQuickstartShowsTheMinimalConfiguration(t *testing.T) {
	lines := section(t, readPage(t, "..", "README.md"), "Quickstart")
	var block []string
	in := false
	for _, l := range lines {
		if l == "```yaml" {
			in = true
			continue
		}
		if in && l == "```" {
			break
		}
		if in {
			block = append(block, l)
		}
	}
	want, err := os.ReadFile("../configs/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(block, "\n") + "\n"; got != string(want) {
		t.Errorf("the quickstart's YAML block differs from configs/minimal.yaml:\n--- README\n%s--- configs/minimal.yaml\n%s", got, want)
	}
}

// TestReadmeQuotesTheLatestBenchmarkRun: the README's figures are of the newest benchmark run
// (the latest benchmarks/results/<date>T<time>.md) and each figure in its table is in that
// run's report, so a new run or an edited figure that the report does not hold fails here.
func TestReadmeQuotesTheLatestBenchmarkRun(t *testing.T) {
	runs, err := filepath.Glob("../benchmarks/results/20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9][0-9][0-9].md")
	if err != nil || len(runs) == 0 {
		t.Fatalf("no benchmark run in benchmarks/results (%v)", err)
	}
	slices.Sort(runs)
	latest := filepath.Base(runs[len(runs)-1])
	lines := section(t, readPage(t, "..", "README.md"), "Performance")
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, "(benchmarks/results/"+latest+")") {
		t.Fatalf("the README's Performance section does not cite the latest run, benchmarks/results/%s", latest)
	}
	date := latest[:len("2026-12-02")]
	if !strings.Contains(text, date) {
		t.Errorf("the README's Performance section does not state the date of the run, %s", date)
	}
	report, err := os.ReadFile("../benchmarks/results/" + latest)
	if err != nil {
		t.Fatal(err)
	}
	figure := regexp.MustCompile(`^[0-9][0-9,]*(\.[0-9]+)?(×| ms)?$`)
	found := 0
	for _, l := range lines {
		if !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		// Columns 2 and 3 are measured figures (kmirror, MirrorMaker 2); the ratios of
		// column 4 the report states only in part, so they are checked where it does.
		for c, cell := range cells[1:] {
			v := strings.TrimSpace(cell)
			if !figure.MatchString(v) {
				continue
			}
			plain := strings.ReplaceAll(v, ",", "")
			if !strings.Contains(string(report), plain) {
				if c < 2 {
					t.Errorf("README figure %q (%s) is not in benchmarks/results/%s", v, strings.TrimSpace(cells[0]), latest)
				}
				continue
			}
			found++
		}
	}
	if found < 10 {
		t.Errorf("only %d of the README's figures found in benchmarks/results/%s", found, latest)
	}
}
