// Package syntax stands in for github.com/grafana/loki/v3/pkg/logql/syntax in the dashboard-linter
// build (see ../../../go.mod): every name dashboard-linter uses, and a parser that refuses every
// query. The linter then reports a Loki target as an invalid LogQL query; Prometheus targets, the
// only kind in this project's dashboard, never reach it.
package syntax

import (
	"errors"
	"time"
)

// Expr is a LogQL expression.
type Expr interface{ isExpr() }

// StageExpr is a stage of a log pipeline.
type StageExpr interface{ Expr }

// ErrNoLogQL is what ParseExpr returns: this build has no LogQL parser.
var ErrNoLogQL = errors.New("LogQL is not supported by this build of dashboard-linter (no Loki)")

// ParseExpr always fails (see ErrNoLogQL).
func ParseExpr(string) (Expr, error) { return nil, ErrNoLogQL }

type BinOpExpr struct{ SampleExpr, RHS Expr }
type RangeAggregationExpr struct{ Left Expr }
type VectorAggregationExpr struct{ Left Expr }
type LabelReplaceExpr struct{ Left Expr }
type LogRange struct {
	Left     Expr
	Interval time.Duration
}
type PipelineExpr struct {
	Left        Expr
	MultiStages []StageExpr
}

func (*BinOpExpr) isExpr()             {}
func (*RangeAggregationExpr) isExpr()  {}
func (*VectorAggregationExpr) isExpr() {}
func (*LabelReplaceExpr) isExpr()      {}
func (*LogRange) isExpr()              {}
func (*PipelineExpr) isExpr()          {}
