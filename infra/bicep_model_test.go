package infra

import (
	"fmt"
	"strings"
	"testing"

	bicep "github.com/tree-sitter-grammars/tree-sitter-bicep/bindings/go"
	sitter "github.com/tree-sitter/go-tree-sitter"
)

// This file turns a .bicep source into a small model over the tree-sitter syntax tree:
// parameters, variables, resources and outputs, with helpers to read object properties and
// to evaluate the simple expressions the policies need (string literals, variables holding
// literals, var.member lookups). It is deliberately not a Bicep evaluator: anything it cannot
// resolve is reported as unresolved, and the policies treat that as a violation, never as a pass.

// bicepModel is one parsed .bicep file.
type bicepModel struct {
	name      string
	src       []byte
	tree      *sitter.Tree
	params    []bicepParam
	vars      map[string]*sitter.Node // name -> value expression
	resources []*bicepResource
	outputs   map[string]*sitter.Node // name -> value expression
}

// bicepParam is a `param` declaration.
type bicepParam struct {
	name, typ  string
	hasDefault bool
	secure     bool
	decorators string // source text of the decorators above the declaration
	def        string // source text of the default value ("" when none)
}

// bicepResource is a `resource` declaration.
type bicepResource struct {
	symbol     string       // symbolic name
	typ        string       // e.g. Microsoft.Storage/storageAccounts
	apiVersion string       // e.g. 2023-05-01
	body       *sitter.Node // the resource's object
	loop       *sitter.Node // the for_statement, nil when not a loop
	condition  *sitter.Node // the if condition, nil when unconditional
	existing   bool         // `existing`: a reference to a resource the template does not create
}

// syntaxProblems lists every ERROR and MISSING node of a tree with its position.
func syntaxProblems(src []byte, root *sitter.Node) []string {
	var out []string
	var walk func(n *sitter.Node)
	walk = func(n *sitter.Node) {
		switch {
		case n.IsError():
			p := n.StartPosition()
			text := n.Utf8Text(src)
			if len(text) > 60 {
				text = text[:60] + "…"
			}
			out = append(out, fmt.Sprintf("%d:%d: syntax error near %q", p.Row+1, p.Column+1, text))
		case n.IsMissing():
			p := n.StartPosition()
			out = append(out, fmt.Sprintf("%d:%d: missing %s", p.Row+1, p.Column+1, n.Kind()))
		}
		for i := uint(0); i < n.ChildCount(); i++ {
			walk(n.Child(i))
		}
	}
	walk(root)
	return out
}

// parseBicep parses src; it returns the model and the syntax problems (ERROR/MISSING nodes).
func parseBicep(t testing.TB, name string, src []byte) (*bicepModel, []string) {
	t.Helper()
	p := sitter.NewParser()
	defer p.Close()
	if err := p.SetLanguage(sitter.NewLanguage(bicep.Language())); err != nil {
		t.Fatalf("load the Bicep grammar: %v", err)
	}
	tree := p.Parse(src, nil)
	t.Cleanup(tree.Close)
	root := tree.RootNode()
	m := &bicepModel{name: name, src: src, tree: tree, vars: map[string]*sitter.Node{}, outputs: map[string]*sitter.Node{}}
	pendingDecorators := ""
	for i := uint(0); i < root.NamedChildCount(); i++ {
		n := root.NamedChild(i)
		switch n.Kind() {
		case "decorators":
			pendingDecorators = m.text(n)
			continue
		case "parameter_declaration":
			bp := bicepParam{name: m.text(n.NamedChild(0)), decorators: pendingDecorators}
			bp.secure = strings.Contains(pendingDecorators, "@secure()")
			if ty := n.NamedChild(1); ty != nil {
				bp.typ = m.text(ty)
			}
			bp.hasDefault = n.NamedChildCount() > 2
			if bp.hasDefault {
				bp.def = m.text(n.NamedChild(2))
			}
			m.params = append(m.params, bp)
		case "variable_declaration":
			m.vars[m.text(n.NamedChild(0))] = n.NamedChild(n.NamedChildCount() - 1)
		case "output_declaration":
			m.outputs[m.text(n.NamedChild(0))] = n.NamedChild(n.NamedChildCount() - 1)
		case "resource_declaration":
			m.resources = append(m.resources, m.resource(n))
		}
		if n.Kind() != "comment" {
			pendingDecorators = ""
		}
	}
	return m, syntaxProblems(src, root)
}

func (m *bicepModel) resource(n *sitter.Node) *bicepResource {
	r := &bicepResource{symbol: m.text(n.NamedChild(0))}
	for i := uint(0); i < n.ChildCount(); i++ {
		if n.Child(i).Kind() == "existing" {
			r.existing = true
		}
	}
	typeRef, _ := m.literal(n.NamedChild(1))
	r.typ, r.apiVersion, _ = strings.Cut(typeRef, "@")
	body := n.NamedChild(2)
	if body != nil && body.Kind() == "for_statement" {
		r.loop = body
		body = body.ChildByFieldName("body")
	}
	if body != nil && body.Kind() == "if_statement" {
		r.condition = body.NamedChild(0)
		body = body.NamedChild(1)
	}
	if body != nil && body.Kind() == "object" {
		r.body = body
	}
	return r
}

// text is the source text of a node ("" for nil).
func (m *bicepModel) text(n *sitter.Node) string {
	if n == nil {
		return ""
	}
	return n.Utf8Text(m.src)
}

// literal returns the value of a plain string literal (no interpolation).
func (m *bicepModel) literal(n *sitter.Node) (string, bool) {
	if n == nil || n.Kind() != "string" {
		return "", false
	}
	var b strings.Builder
	for i := uint(0); i < n.NamedChildCount(); i++ {
		c := n.NamedChild(i)
		switch c.Kind() {
		case "string_content":
			b.WriteString(m.text(c))
		case "escape_sequence":
			switch e := m.text(c); e {
			case `\'`:
				b.WriteByte('\'')
			case `\\`:
				b.WriteByte('\\')
			case `\n`:
				b.WriteByte('\n')
			case `\t`:
				b.WriteByte('\t')
			default:
				return "", false
			}
		default: // interpolation
			return "", false
		}
	}
	s := b.String()
	if strings.HasPrefix(m.text(n), "'''") { // multi-line strings keep their content verbatim
		s = strings.TrimSuffix(strings.TrimPrefix(m.text(n), "'''"), "'''")
	}
	return s, true
}

// eval resolves a node to a string: a literal, a variable holding a literal, or
// var.member where var is an object of literals. Anything else is unresolved.
func (m *bicepModel) eval(n *sitter.Node) (string, bool) {
	return m.evalDepth(n, 0)
}

func (m *bicepModel) evalDepth(n *sitter.Node, depth int) (string, bool) {
	if n == nil || depth > 8 {
		return "", false
	}
	switch n.Kind() {
	case "string":
		return m.literal(n)
	case "identifier":
		if v, ok := m.vars[m.text(n)]; ok {
			return m.evalDepth(v, depth+1)
		}
	case "member_expression":
		obj := n.ChildByFieldName("object")
		prop := n.ChildByFieldName("property")
		if obj != nil && obj.Kind() == "identifier" {
			if v, ok := m.vars[m.text(obj)]; ok && v.Kind() == "object" {
				return m.evalDepth(m.prop(v, m.text(prop)), depth+1)
			}
		}
	case "parenthesized_expression":
		return m.evalDepth(n.NamedChild(0), depth+1)
	}
	return "", false
}

// evalList resolves an array expression (or a variable holding one) to its string
// elements; unresolved elements are returned as "<expr:TEXT>".
func (m *bicepModel) evalList(n *sitter.Node) ([]string, bool) {
	if n != nil && n.Kind() == "identifier" {
		if v, ok := m.vars[m.text(n)]; ok {
			n = v
		}
	}
	if n == nil || n.Kind() != "array" {
		return nil, false
	}
	var out []string
	for i := uint(0); i < n.NamedChildCount(); i++ {
		c := n.NamedChild(i)
		if c.Kind() == "comment" || c.Kind() == "decorators" {
			continue
		}
		if s, ok := m.eval(c); ok {
			out = append(out, s)
		} else {
			out = append(out, "<expr:"+m.text(c)+">")
		}
	}
	return out, true
}

// keyOf returns the key of an object_property (identifier or quoted string).
func (m *bicepModel) keyOf(p *sitter.Node) string {
	k := p.NamedChild(0)
	if k == nil {
		return ""
	}
	if s, ok := m.literal(k); ok {
		return s
	}
	return m.text(k)
}

// props lists the object_property children of an object node.
func (m *bicepModel) props(obj *sitter.Node) []*sitter.Node {
	var out []*sitter.Node
	if obj == nil || obj.Kind() != "object" {
		return nil
	}
	for i := uint(0); i < obj.NamedChildCount(); i++ {
		if c := obj.NamedChild(i); c.Kind() == "object_property" {
			out = append(out, c)
		}
	}
	return out
}

// prop returns the value of property key in an object node (nil when absent).
func (m *bicepModel) prop(obj *sitter.Node, key string) *sitter.Node {
	for _, p := range m.props(obj) {
		if m.keyOf(p) == key {
			return p.NamedChild(p.NamedChildCount() - 1)
		}
	}
	return nil
}

// path follows nested object properties: path(obj, "properties", "minimumTlsVersion").
func (m *bicepModel) path(obj *sitter.Node, keys ...string) *sitter.Node {
	n := obj
	for _, k := range keys {
		n = m.prop(n, k)
		if n == nil {
			return nil
		}
	}
	return n
}

// ofType returns the resources of a type (case-insensitive, without API version).
func (m *bicepModel) ofType(typ string) []*bicepResource {
	var out []*bicepResource
	for _, r := range m.resources {
		if strings.EqualFold(r.typ, typ) {
			out = append(out, r)
		}
	}
	return out
}

// param returns the parameter declaration of a name, nil if none.
func (m *bicepModel) param(name string) *bicepParam {
	for i := range m.params {
		if m.params[i].name == name {
			return &m.params[i]
		}
	}
	return nil
}

// resolve follows an identifier naming a variable to the variable's value expression
// (repeatedly); any other node is returned as is.
func (m *bicepModel) resolve(n *sitter.Node) *sitter.Node {
	for depth := 0; n != nil && n.Kind() == "identifier" && depth < 8; depth++ {
		v, ok := m.vars[m.text(n)]
		if !ok {
			break
		}
		n = v
	}
	return n
}

// scopeOf returns the resource a `scope:` expression names: `sym` or, inside a loop,
// `sym[i]` (nil when it names no resource of the template).
func (m *bicepModel) scopeOf(r *bicepResource) *bicepResource {
	n := m.prop(r.body, "scope")
	if n != nil && n.Kind() == "subscript_expression" {
		n = n.ChildByFieldName("object")
	}
	return m.bySymbol(m.text(n))
}

// bySymbol returns the resource with a symbolic name, nil if none.
func (m *bicepModel) bySymbol(symbol string) *bicepResource {
	for _, r := range m.resources {
		if r.symbol == symbol {
			return r
		}
	}
	return nil
}

// names returns the names a resource declaration creates: the evaluated name, or for a
// loop `for x in LIST: { name: x }` every element of LIST. Unresolvable names come back as
// "<expr:TEXT>" so that callers can still match them against other expressions.
func (m *bicepModel) names(r *bicepResource) []string {
	nameNode := m.prop(r.body, "name")
	if r.loop != nil {
		loopVar, iter := m.loopParts(r.loop)
		if nameNode != nil && m.text(nameNode) == loopVar {
			if list, ok := m.evalList(iter); ok {
				return list
			}
		}
		return []string{"<expr:" + m.text(nameNode) + " for " + m.text(iter) + ">"}
	}
	if s, ok := m.eval(nameNode); ok {
		return []string{s}
	}
	return []string{"<expr:" + m.text(nameNode) + ">"}
}

// loopParts returns the loop variable and the iterated expression of a for_statement.
func (m *bicepModel) loopParts(loop *sitter.Node) (string, *sitter.Node) {
	var loopVar string
	var iter *sitter.Node
	body := loop.ChildByFieldName("body")
	for i := uint(0); i < loop.NamedChildCount(); i++ {
		c := loop.NamedChild(i)
		if body != nil && c.Id() == body.Id() {
			break
		}
		switch {
		case loopVar == "" && c.Kind() == "for_loop_parameters":
			loopVar = m.text(c.NamedChild(0))
		case loopVar == "":
			loopVar = m.text(c)
		default:
			iter = c
		}
	}
	return loopVar, iter
}

// walk calls f for every node below n (depth first).
func walk(n *sitter.Node, f func(*sitter.Node)) {
	if n == nil {
		return
	}
	f(n)
	for i := uint(0); i < n.NamedChildCount(); i++ {
		walk(n.NamedChild(i), f)
	}
}
