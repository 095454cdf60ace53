package infra

import (
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// goSetting is an exported string constant named Setting* in the repository's Go code: the
// name of an app setting (environment variable) the code reads. When the same package has
// a constant Default<Same> (SettingRetentionDays → DefaultRetentionDays), Default holds its
// value as an app setting would spell it (strings as is, numbers in decimal).
type goSetting struct {
	Const      string // importpath.Name
	Value      string
	Default    string
	HasDefault bool
}

var moduleLineRE = regexp.MustCompile(`(?m)^module\s+(\S+)`)

// collectGoSettings parses every non-test .go file under repoRoot (skipping node_modules,
// testdata, vendor and dot folders) and resolves every exported const named Setting* to its
// string value. Values may be built from other constants, also across packages
// (storage.SettingStorage + "__accountName"). It fails on a Setting* constant it cannot
// resolve, so a new setting can never slip past the app-settings policy unnoticed.
func collectGoSettings(repoRoot string) ([]goSetting, error) {
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		return nil, fmt.Errorf("read go.mod: %w", err)
	}
	mm := moduleLineRE.FindSubmatch(gomod)
	if mm == nil {
		return nil, fmt.Errorf("go.mod has no module line")
	}
	module := string(mm[1])

	type pending struct {
		pkg     string            // import path of the declaring package
		imports map[string]string // file's import name -> import path
		expr    ast.Expr
	}
	consts := map[string]pending{} // importpath.Name -> declaration (all string-ish consts)
	var settings []string          // keys of the Setting* consts
	fset := token.NewFileSet()
	err = filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != repoRoot && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "node_modules" || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		rel, err := filepath.Rel(repoRoot, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := module
		if rel != "." {
			pkg = module + "/" + filepath.ToSlash(rel)
		}
		imports := map[string]string{}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			name := p[strings.LastIndex(p, "/")+1:]
			if im.Name != nil {
				name = im.Name.Name
			}
			imports[name] = p
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i >= len(vs.Values) {
						continue // iota-style continuation: not a string setting
					}
					key := pkg + "." + n.Name
					consts[key] = pending{pkg: pkg, imports: imports, expr: vs.Values[i]}
					if n.IsExported() && strings.HasPrefix(n.Name, "Setting") && len(n.Name) > len("Setting") {
						settings = append(settings, key)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	var resolve func(key string, depth int) (constant.Value, error)
	resolve = func(key string, depth int) (constant.Value, error) {
		p, ok := consts[key]
		if !ok {
			return nil, fmt.Errorf("constant %s not found", key)
		}
		if depth > 16 {
			return nil, fmt.Errorf("constant %s: reference cycle", key)
		}
		var eval func(e ast.Expr) (constant.Value, error)
		eval = func(e ast.Expr) (constant.Value, error) {
			switch e := e.(type) {
			case *ast.BasicLit:
				v := constant.MakeFromLiteral(e.Value, e.Kind, 0)
				if v.Kind() == constant.Unknown {
					return nil, fmt.Errorf("bad literal %s", e.Value)
				}
				return v, nil
			case *ast.ParenExpr:
				return eval(e.X)
			case *ast.BinaryExpr:
				l, err := eval(e.X)
				if err != nil {
					return nil, err
				}
				r, err := eval(e.Y)
				if err != nil {
					return nil, err
				}
				if e.Op == token.SHL || e.Op == token.SHR {
					n, ok := constant.Uint64Val(r)
					if !ok {
						return nil, fmt.Errorf("bad shift count")
					}
					return constant.Shift(l, e.Op, uint(n)), nil
				}
				if l.Kind() != r.Kind() && !(isNumeric(l) && isNumeric(r)) {
					return nil, fmt.Errorf("mismatched operands for %s", e.Op)
				}
				return constant.BinaryOp(l, e.Op, r), nil
			case *ast.Ident:
				return resolve(p.pkg+"."+e.Name, depth+1)
			case *ast.SelectorExpr:
				x, ok := e.X.(*ast.Ident)
				if !ok {
					return nil, fmt.Errorf("unsupported selector")
				}
				if d, ok := timeUnits[e.Sel.Name]; ok && p.imports[x.Name] == "time" {
					return constant.MakeInt64(int64(d)), nil
				}
				ip, ok := p.imports[x.Name]
				if !ok {
					return nil, fmt.Errorf("unknown package %s", x.Name)
				}
				return resolve(ip+"."+e.Sel.Name, depth+1)
			case *ast.CallExpr: // a conversion such as Setting("X") or time.Duration(5)
				if len(e.Args) == 1 {
					return eval(e.Args[0])
				}
			}
			return nil, fmt.Errorf("unsupported expression %T", e)
		}
		return eval(p.expr)
	}
	asSetting := func(v constant.Value) string {
		if v.Kind() == constant.String {
			return constant.StringVal(v)
		}
		return v.ExactString()
	}

	var out []goSetting
	var problems []string
	for _, key := range settings {
		v, err := resolve(key, 0)
		if err == nil && v.Kind() != constant.String {
			err = fmt.Errorf("not a string constant")
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		gs := goSetting{Const: key, Value: constant.StringVal(v)}
		pkg, name, _ := strings.Cut(key, ".Setting")
		if _, ok := consts[pkg+".Default"+name]; ok {
			d, err := resolve(pkg+".Default"+name, 0)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s.Default%s: %v", pkg, name, err))
				continue
			}
			gs.Default, gs.HasDefault = asSetting(d), true
		}
		out = append(out, gs)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("cannot resolve Setting* constants (the policy test must know every setting's value):\n  %s", strings.Join(problems, "\n  "))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Value < out[j].Value })
	return out, nil
}

// timeUnits are the time package's duration constants a Default* may be built from
// (DefaultDrainTimeout = 25 * time.Second).
var timeUnits = map[string]time.Duration{
	"Nanosecond": time.Nanosecond, "Microsecond": time.Microsecond, "Millisecond": time.Millisecond,
	"Second": time.Second, "Minute": time.Minute, "Hour": time.Hour,
}

func isNumeric(v constant.Value) bool {
	k := v.Kind()
	return k == constant.Int || k == constant.Float
}
