// The one package of github.com/grafana/loki/v3 that dashboard-linter imports (its LogQL rules),
// reduced to the names it uses. Loki is under the AGPL, which this project does not take in, and
// our dashboard has no Loki query: with this stub, a Loki target fails to parse, and nothing else
// changes. hack/dashboard-linter/go.mod replaces the real module with this directory.
module github.com/grafana/loki/v3

go 1.23
