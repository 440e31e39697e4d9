"""The access report as one self-contained HTML page: inline CSS, JS and SVG, nothing fetched.

The summary (figures, charts, privileged roles) is rendered here, escaped, so it reads without
JavaScript; the table's rows travel as JSON in a ``<script type="application/json">`` block (escaped
so no name can close it) and a small script renders them with textContent only, sortable and
filterable, a page at a time, so 50,000 rows stay one light file.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from synapse_scim.review.report import CSV_COLUMNS, GRANTED_UNKNOWN, Report, Status, csv_cells

COLORS = {
    Status.MANAGED: "#2f7d32",
    Status.MANUAL: "#c77700",
    Status.ORPHANED: "#8e44ad",
    Status.PENDING: "#c0392b",
    Status.HELD: "#d35400",
    Status.KEPT: "#2c6fbb",
    Status.UNWANTED: "#7f8c8d",
}

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d2330}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}
.meta{color:#555;font-size:12px}.meta code{font-size:11px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{border:1px solid #d8dce3;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:22px}.card span{color:#555;font-size:12px}
.priv{border-color:#c0392b;background:#fdf1f0}
.charts{display:flex;flex-wrap:wrap;gap:24px}
table{border-collapse:collapse;width:100%;font-size:12px}
#assignments td{white-space:nowrap}
th,td{border-bottom:1px solid #e3e6eb;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f5f8;cursor:pointer;position:sticky;top:0;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
.small td,.small th{font-size:12px}
.controls{display:flex;gap:8px;align-items:center;margin:8px 0}
.controls input,.controls select{padding:4px}
.st{display:inline-block;padding:0 6px;border-radius:8px;color:#fff;font-size:11px;white-space:nowrap}
"""

SCRIPT = """
(function(){
var cols=JSON.parse(document.getElementById('cols').textContent);
var rows=JSON.parse(document.getElementById('rows').textContent);
var colors=JSON.parse(document.getElementById('colors').textContent);
var body=document.getElementById('rows-body'),q=document.getElementById('filter'),
 st=document.getElementById('status-filter'),count=document.getElementById('row-count'),
 more=document.getElementById('more'),heads=document.querySelectorAll('#assignments th');
var sortCol=-1,sortDir=1,shown=0,view=rows,PAGE=1000,STATUS=cols.indexOf('status');
function apply(){
 var t=q.value.toLowerCase(),s=st.value;
 view=rows.filter(function(r){return (!s||r[STATUS]===s)&&(!t||r.join('\\u0001').toLowerCase().indexOf(t)>=0);});
 if(sortCol>=0){view.sort(function(a,b){return a[sortCol]<b[sortCol]?-sortDir:a[sortCol]>b[sortCol]?sortDir:0;});}
 body.textContent='';shown=0;page();
}
function page(){
 var frag=document.createDocumentFragment(),end=Math.min(view.length,shown+PAGE);
 for(var i=shown;i<end;i++){var tr=document.createElement('tr');
  for(var j=0;j<cols.length;j++){var td=document.createElement('td');
   if(j===STATUS){var b=document.createElement('span');b.className='st';
    b.style.background=colors[view[i][j]]||'#555';b.textContent=view[i][j];td.appendChild(b);}
   else td.textContent=view[i][j];tr.appendChild(td);}
  frag.appendChild(tr);}
 body.appendChild(frag);shown=end;
 count.textContent=String(view.length);
 document.getElementById('row-shown').textContent=String(shown);
 more.hidden=shown>=view.length;
}
for(var k=0;k<heads.length;k++){(function(k){heads[k].addEventListener('click',function(){
 sortDir=sortCol===k?-sortDir:1;sortCol=k;
 for(var m=0;m<heads.length;m++)heads[m].removeAttribute('aria-sort');
 heads[k].setAttribute('aria-sort',sortDir>0?'ascending':'descending');apply();});})(k);}
q.addEventListener('input',apply);st.addEventListener('change',apply);more.addEventListener('click',page);
apply();document.body.setAttribute('data-ready','1');
})();
"""


# The table's columns: the justification and the names first, the ids last (the CSV's order is the
# workspace's first, for spreadsheets).
HTML_COLUMNS = (
    "status",
    "principal",
    "principalType",
    "role",
    "scope",
    "bindings",
    "via",
    "namespace",
    "workspace",
    "workspaceName",
    "planId",
    "approvedBy",
    "granted",
    "principalId",
    "appId",
    "roleId",
    "assignmentId",
)
_ORDER = [CSV_COLUMNS.index(c) for c in HTML_COLUMNS]


def _json_script(element_id: str, value: Any) -> str:
    """JSON inside <script>: <, >, & and the JS line separators escaped, so no value can end the block."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for old, new in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(old, new)
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _bars(title: str, items: list[tuple[str, int, str]], width: int = 420) -> str:
    """A horizontal bar chart as inline SVG: (label, value, colour) per bar."""
    if not items:
        return ""
    top = max(v for _, v, _ in items) or 1
    label_w, bar_w, h = 190, width - 190 - 60, 18
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{len(items) * (h + 4) + 24}">',
        f'<text x="0" y="14" font-size="13" font-weight="600">{escape(title)}</text>',
    ]
    for i, (label, value, color) in enumerate(items):
        y = 24 + i * (h + 4)
        w = max(1, round(bar_w * value / top)) if value else 0
        short = label if len(label) <= 30 else label[:29] + "…"
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="12"><title>{escape(label)}</title>{escape(short)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{h}" fill="{color}" rx="2"/>'
            f'<text x="{label_w + w + 4}" y="{y + 13}" font-size="12">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Report) -> str:
    summary = report.summary()
    digest = report.digest()
    rows = report.rows
    e = escape
    cards = [
        ("assignments", summary["assignments"], ""),
        ("principals", summary["principals"], ""),
        *((s, summary["byStatus"][s], "") for s in Status.ALL if summary["byStatus"][s] or s in (Status.MANUAL,)),
        ("privileged", summary["privileged"]["assignments"], " priv"),
    ]
    card_html = "".join(
        f'<div class="card{cls}" data-figure="{e(name)}"><b>{value}</b><span>{e(name)}</span></div>'
        for name, value, cls in cards
    )
    status_chart = _bars(
        "Assignments by justification",
        [(s, summary["byStatus"][s], COLORS[s]) for s in Status.ALL if summary["byStatus"][s]],
    )
    role_totals: dict[str, int] = {}
    for w in summary["byWorkspace"]:
        for role, n in w["byRole"].items():
            role_totals[role] = role_totals.get(role, 0) + n
    role_chart = _bars(
        "Assignments by role (all workspaces)",
        [
            (role, n, "#c0392b" if role in summary["privileged"]["roles"] else "#2c6fbb")
            for role, n in sorted(role_totals.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
        ],
    )
    ws_chart = _bars(
        "Assignments by workspace",
        [(f"{w['namespace']}/{w['name']}", w["assignments"], "#34495e") for w in summary["byWorkspace"][:20]],
    )
    ws_rows = []
    for w, result in zip(summary["byWorkspace"], report.workspaces, strict=True):
        roles = ", ".join(f"{r}: {n}" for r, n in w["byRole"].items()) or "-"
        statuses = ", ".join(f"{s}: {n}" for s, n in w["byStatus"].items()) or "-"
        extra = ""
        if result.plan_id:
            extra = f"removal plan {result.plan_id}"
            if result.approval:
                extra += "; " + result.approval.text(result.plan_id)
        ws_rows.append(
            f'<tr data-workspace="{e(w["namespace"])}/{e(w["name"])}"><td>{e(w["namespace"])}/{e(w["name"])}</td>'
            f'<td>{e(w["workspaceName"])}</td><td class="n">{w["assignments"]}</td><td>{e(roles)}</td>'
            f"<td>{e(statuses)}</td><td>{e(result.error or extra or '-')}</td></tr>"
        )
    top_rows = "".join(
        f"<tr><td>{e(p['display'])}</td><td>{e(p['type'])}</td><td><code>{e(p['id'])}</code></td>"
        f"<td>{p['roles']}</td></tr>"
        for p in summary["topPrincipals"]
    )
    priv = [r for r in rows if r.role in summary["privileged"]["roles"]]
    priv_rows = "".join(
        f"<tr><td>{e(r.namespace)}/{e(r.workspace)}</td><td>{e(r.principal.display)}</td><td>{e(str(r.principal.type))}</td>"
        f"<td>{e(r.role)}</td><td>{e(r.scope)}</td><td>{e(r.status)}</td></tr>"
        for r in priv[:200]
    )
    priv_more = f"<p>… and {len(priv) - 200} more (filter the table below)</p>" if len(priv) > 200 else ""
    head = "".join(f'<th scope="col">{e(c)}</th>' for c in HTML_COLUMNS)
    options = "".join(f'<option value="{e(s)}">{e(s)}</option>' for s in Status.ALL)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline';
 script-src 'unsafe-inline'; img-src data:">
<title>Synapse access review {e(report.generated_at)}</title><style>{CSS}</style></head>
<body data-ready="0">
<h1>Synapse access review</h1>
<p class="meta">Generated <time id="generated-at">{e(report.generated_at)}</time> by synapse-scim report ·
SHA-256 of the rows (canonical JSON, without the timestamp): <code id="digest">{digest}</code><br>
Grant time: Synapse records no creation time for role assignments; the operator records when it granted
each in its grant ledger (ConfigMaps &lt;workspace&gt;-grants-&lt;0..f&gt;), read with --cluster. Where it
has no entry, or without --cluster, a row says “{e(GRANTED_UNKNOWN)}”. Approval authors are Kubernetes
field managers (e.g. kubectl-annotate), not people, unless the approver used --field-manager.</p>
<h2>Summary</h2>
<div class="cards" id="summary">{card_html}</div>
<div class="charts">{status_chart}{role_chart}{ws_chart}</div>
<h2>Workspaces</h2>
<table class="small" id="workspaces"><thead><tr><th>SynapseWorkspace</th><th>workspace</th><th>assignments</th>
<th>by role</th><th>by justification</th><th>removals / errors</th></tr></thead>
<tbody>{"".join(ws_rows)}</tbody></table>
<h2>Privileged roles ({summary["privileged"]["assignments"]}: {e(", ".join(summary["privileged"]["roles"]))})</h2>
<table class="small" id="privileged"><thead><tr><th>SynapseWorkspace</th><th>principal</th><th>type</th><th>role</th>
<th>scope</th><th>justification</th></tr></thead>
<tbody>{priv_rows or '<tr><td colspan="6">none</td></tr>'}</tbody></table>{priv_more}
<h2>Principals with the most roles</h2>
<table class="small" id="top-principals"><thead><tr><th>principal</th><th>type</th><th>id</th><th>roles</th>
</tr></thead>
<tbody>{top_rows}</tbody></table>
<h2>Every assignment</h2>
<div class="controls"><input id="filter" type="search" placeholder="filter (any column)" aria-label="filter">
<select id="status-filter" aria-label="justification"><option value="">every justification</option>{options}</select>
<span><span id="row-count">{len(rows)}</span> rows, <span id="row-shown">0</span> shown</span>
<button id="more" type="button" hidden>show more</button></div>
<noscript><p>The table needs JavaScript; the same rows are in <code>-o csv</code> and <code>-o json</code>.</p>
</noscript>
<div style="overflow-x:auto">
<table id="assignments"><thead><tr>{head}</tr></thead><tbody id="rows-body"></tbody></table></div>
{_json_script("cols", list(HTML_COLUMNS))}
{_json_script("rows", [[cells[i] for i in _ORDER] for cells in map(csv_cells, rows)])}
{_json_script("colors", COLORS)}
<script>{SCRIPT}</script>
</body></html>
"""
