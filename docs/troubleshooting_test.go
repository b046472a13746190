package docs

// docs/troubleshooting.md holds every message kmirror prints that an operator can act on. The
// rule this file enforces, read from the code (go/ast, no build):
//
//   - every warning and error kmirror logs: a call X.Warn(msg, ...) or X.Error(msg, ...) whose
//     receiver X is a logger (its last name is log, Log or logger), and a call of a wrapper that
//     logs at warning level (warnOnce, once), in the non-test Go files of cmd/ and pkg/;
//   - every check `validate --connect` prints (pkg/preflight's check names);
//
// must be on the page: a message written as one string literal verbatim, a message built from
// literals and names (constants, variables) each literal part of it. The page shows messages in
// code blocks and tables; where it abbreviates a message with "...", the parts on either side
// are what the code has.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// logWrappers are functions that log their argument at index as a warning.
var logWrappers = map[string]int{"warnOnce": 1, "once": 1}

// notOnThePage are log calls the page need not show, by file and message, with the reason.
var notOnThePage = map[string]string{
	// The stop's steps log their own name and error; the page's "A stop that cannot drain"
	// covers them by the line that sums them up ("stop was not clean: ...").
	"pkg/mirror/stop.go: what": "a step of the stop, summed up by `stop was not clean`",
}

// skipDirs are packages (and files) that are not the daemon: the demo, test infrastructure.
var skipDirs = []string{"pkg/demo", "pkg/embedded", "pkg/testpki", "pkg/jaegertest", "cmd/kmirror/demo.go"}

// logMessage is one message of the code: its literal parts (several when it is built from
// literals and names), and where it is.
type logMessage struct {
	where string // file:line
	file  string
	parts []string
	expr  string // the message's expression when it has no literal part
}

// literalParts returns the string literals of a concatenation, and whether the expression was
// one literal alone.
func literalParts(e ast.Expr) (parts []string, whole bool) {
	switch v := e.(type) {
	case *ast.BasicLit:
		if v.Kind == token.STRING {
			s, err := strconv.Unquote(v.Value)
			if err == nil {
				return []string{s}, true
			}
		}
	case *ast.BinaryExpr:
		if v.Op == token.ADD {
			l, lw := literalParts(v.X)
			r, rw := literalParts(v.Y)
			if lw && rw && len(l) == 1 && len(r) == 1 {
				return []string{l[0] + r[0]}, true
			}
			return append(l, r...), false
		}
	case *ast.ParenExpr:
		return literalParts(v.X)
	}
	return nil, false
}

func receiverName(e ast.Expr) string {
	switch v := e.(type) {
	case *ast.Ident:
		return v.Name
	case *ast.SelectorExpr:
		return v.Sel.Name
	}
	return ""
}

// logMessages returns the warnings and errors logged by the code under root/cmd and root/pkg.
func logMessages(t *testing.T, root string) []logMessage {
	t.Helper()
	var out []logMessage
	fset := token.NewFileSet()
	for _, dir := range []string{"cmd", "pkg"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			if d.IsDir() {
				if slices.Contains(skipDirs, rel) {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || slices.Contains(skipDirs, rel) {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				var arg ast.Expr
				switch fn := call.Fun.(type) {
				case *ast.SelectorExpr:
					switch recv := strings.ToLower(receiverName(fn.X)); {
					case (fn.Sel.Name == "Warn" || fn.Sel.Name == "Error") && (recv == "log" || recv == "logger") && len(call.Args) > 0:
						arg = call.Args[0]
					case logWrappers[fn.Sel.Name] > 0 && len(call.Args) > logWrappers[fn.Sel.Name]:
						arg = call.Args[logWrappers[fn.Sel.Name]]
					}
				}
				if arg == nil {
					return true
				}
				if id, ok := arg.(*ast.Ident); ok && id.Obj != nil && id.Obj.Kind == ast.Var {
					// A wrapper's own parameter (warnOnce's msg): its callers are the messages.
					if fd, ok := id.Obj.Decl.(*ast.Field); ok && isParam(f, fd) {
						if _, listed := notOnThePage[rel+": "+id.Name]; !listed && logWrapperDecl(f, fd) {
							return true
						}
					}
				}
				parts, _ := literalParts(arg)
				m := logMessage{where: rel + ":" + strconv.Itoa(fset.Position(call.Pos()).Line), file: rel, parts: parts}
				if len(parts) == 0 {
					if id, ok := arg.(*ast.Ident); ok {
						m.expr = id.Name
					} else {
						m.expr = "?"
					}
				}
				out = append(out, m)
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// isParam reports whether field is a parameter of a function of f.
func isParam(f *ast.File, field *ast.Field) bool { return enclosingFunc(f, field) != nil }

// logWrapperDecl: field is a parameter of one of logWrappers.
func logWrapperDecl(f *ast.File, field *ast.Field) bool {
	fd := enclosingFunc(f, field)
	return fd != nil && logWrappers[fd.Name.Name] > 0
}

func enclosingFunc(f *ast.File, field *ast.Field) *ast.FuncDecl {
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok {
			continue
		}
		if slices.Contains(fd.Type.Params.List, field) {
			return fd
		}
	}
	return nil
}

// normalise collapses whitespace and drops the Markdown backslash escapes, so that a message
// shown in a table cell or wrapped in the page matches the code's.
func normalise(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, `\|`, "|")), " ")
}

// TestTroubleshootingNamesEveryLoggedProblem: each warning and error kmirror logs is on
// docs/troubleshooting.md (see the file's comment for the rule).
func TestTroubleshootingNamesEveryLoggedProblem(t *testing.T) {
	page := readPage(t, "..", "docs/troubleshooting.md")
	text := normalise(strings.Join(page.lines, "\n"))
	msgs := logMessages(t, "..")
	if len(msgs) < 50 {
		t.Fatalf("only %d logged warnings and errors found: the scan no longer matches the code", len(msgs))
	}
	for _, m := range msgs {
		if len(m.parts) == 0 {
			if _, ok := notOnThePage[m.file+": "+m.expr]; !ok {
				t.Errorf("%s: a warning or error whose message (%s) is no literal: log a literal message, or list it in notOnThePage with the reason", m.where, m.expr)
			}
			continue
		}
		for _, p := range m.parts {
			p = normalise(p)
			if len(p) < 4 || strings.Contains(text, p) {
				continue
			}
			t.Errorf("%s: docs/troubleshooting.md does not show %q: add it with its cause and what to do", m.where, p)
		}
	}
}

// constString returns the value of a string literal, or of a constant declared with one in the
// same file.
func constString(e ast.Expr) (string, bool) {
	switch v := e.(type) {
	case *ast.BasicLit:
		if v.Kind == token.STRING {
			s, err := strconv.Unquote(v.Value)
			return s, err == nil
		}
	case *ast.Ident:
		if v.Obj == nil || v.Obj.Kind != ast.Con {
			return "", false
		}
		if spec, ok := v.Obj.Decl.(*ast.ValueSpec); ok {
			for i, n := range spec.Names {
				if n.Name == v.Name && i < len(spec.Values) {
					return constString(spec.Values[i])
				}
			}
		}
	}
	return "", false
}

// preflightChecks returns the names of the checks `validate --connect` prints: the first
// argument of session.add and session.doing, and the Name of a Check literal, in pkg/preflight.
func preflightChecks(t *testing.T, root string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, filepath.Join(root, "pkg/preflight"), func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{} // name → where
	note := func(e ast.Expr) {
		pos := fset.Position(e.Pos())
		where := filepath.Base(pos.Filename) + ":" + strconv.Itoa(pos.Line)
		switch v := e.(type) {
		case *ast.SelectorExpr:
			return // a check passed on (c.Name): named where it was made
		case *ast.Ident:
			if v.Obj != nil && v.Obj.Kind == ast.Var {
				return // a parameter or variable (add's name): its values are named where they are set
			}
		}
		if n, ok := constString(e); ok {
			names[n] = where
		} else {
			names["<not a constant at "+where+">"] = where
		}
	}
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			ast.Inspect(f, func(n ast.Node) bool {
				switch v := n.(type) {
				case *ast.CallExpr:
					if sel, ok := v.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "add" || sel.Sel.Name == "doing") && len(v.Args) > 0 {
						note(v.Args[0])
					}
				case *ast.CompositeLit:
					if id, ok := v.Type.(*ast.Ident); ok && id.Name == "Check" {
						for _, el := range v.Elts {
							if kv, ok := el.(*ast.KeyValueExpr); ok {
								if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
									note(kv.Value)
								}
							}
						}
					}
				}
				return true
			})
		}
	}
	return names
}

// TestTroubleshootingNamesEveryConnectCheck: each check `validate --connect` prints has its
// fix in the verdicts table of docs/troubleshooting.md.
func TestTroubleshootingNamesEveryConnectCheck(t *testing.T) {
	page := readPage(t, "..", "docs/troubleshooting.md")
	table := strings.Join(section(t, page, "`validate --connect` verdicts"), "\n")
	names := preflightChecks(t, "..")
	if len(names) < 15 {
		t.Fatalf("only %d checks found in pkg/preflight: the scan no longer matches the code", len(names))
	}
	for n, where := range names {
		if !strings.Contains(table, "`"+n+"`") {
			t.Errorf("pkg/preflight/%s: the check %q is not in the verdicts table of docs/troubleshooting.md (name it, with the fix it prints)", where, n)
		}
	}
}

// configKey matches a kmirror setting in a message.
var configKey = regexp.MustCompile(`\b(source|target|topics|consumer|ring|producer|commit|delivery|offset_map|groups|heartbeats|shutdown|log|telemetry|runtime)\.[a-z_]+(\.[a-z_]+)?`)

// settingsIn returns the settings an if statement's condition (and init) reads: the maximal
// selector chains (c.Consumer.SessionTimeout, t.BacklogMaxAge) that are not functions called.
func settingsIn(ifs *ast.IfStmt) map[string]bool {
	out := map[string]bool{}
	called := map[ast.Expr]bool{}
	inner := map[ast.Expr]bool{}
	visit := func(n ast.Node) bool {
		switch v := n.(type) {
		case *ast.CallExpr:
			called[v.Fun] = true
		case *ast.SelectorExpr:
			inner[v.X] = true
		}
		return true
	}
	for _, n := range []ast.Node{ifs.Init, ifs.Cond} {
		if n != nil {
			ast.Inspect(n, visit)
		}
	}
	for _, n := range []ast.Node{ifs.Init, ifs.Cond} {
		if n == nil {
			continue
		}
		ast.Inspect(n, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && !called[sel] && !inner[sel] {
				out[types.ExprString(sel)] = true
			}
			return true
		})
	}
	return out
}

// TestTroubleshootingNamesEverySettingRefusedForAnother: a setting that pkg/config refuses
// because of another setting — the refusal, bad(key, format), sits under conditions that read
// two settings or more, and its message names a second key — is on docs/troubleshooting.md: in
// the table of settings refused together (`key`, in the configuration section) or as a message
// (key: ...). The errors of one setting alone (a bad value, with the values wanted) are in the
// configuration reference instead.
func TestTroubleshootingNamesEverySettingRefusedForAnother(t *testing.T) {
	page := readPage(t, "..", "docs/troubleshooting.md")
	text := normalise(strings.Join(page.lines, "\n"))
	configSection := normalise(strings.Join(section(t, page, "The configuration (exit 78)"), "\n"))
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "../pkg/config/validate.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	var stack []ast.Node
	ast.Inspect(f, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		stack = append(stack, n)
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) < 2 {
			return true
		}
		if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "bad" {
			return true
		}
		key, ok := constString(call.Args[0])
		if !ok {
			return true // a key built at run time (per cluster, per list index): checked by its own tests
		}
		read := map[string]bool{}
		for _, a := range stack {
			if ifs, ok := a.(*ast.IfStmt); ok {
				maps.Copy(read, settingsIn(ifs))
			}
		}
		parts, _ := literalParts(call.Args[1])
		others := map[string]bool{}
		for _, p := range parts {
			for _, k := range configKey.FindAllString(p, -1) {
				if k != key {
					others[k] = true
				}
			}
		}
		if len(others) == 0 || len(read) < 2 {
			return true
		}
		found++
		if !strings.Contains(configSection, "`"+key+"`") && !strings.Contains(text, key+":") {
			t.Errorf("pkg/config/validate.go:%d: %s is refused for another setting (%v) but docs/troubleshooting.md does not name it: add it to the table of settings refused together",
				fset.Position(call.Pos()).Line, key, slices.Sorted(maps.Keys(others)))
		}
		return true
	})
	if found < 8 {
		t.Fatalf("only %d settings refused for another found in pkg/config/validate.go: the scan no longer matches the code", found)
	}
}
