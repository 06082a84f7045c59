// The interactive part of report.html and of `cellnets serve`'s page: stages and runs
// with their state, curves to hover and toggle, the grid's heat map, a sortable table of
// hyperparameters against results, and a page per run. Everything is drawn from a
// snapshot of the study (src/report/snapshot.rs): inline in report.html, fetched every
// few seconds from api/study when served. Names from the study are set as text, never
// as markup, so a run or stage name cannot inject anything.
(function () {
  "use strict";
  var root = document.getElementById("app");
  var live = root.dataset.mode === "live";
  var POLL_MS = 2000;
  var token = new URLSearchParams(location.search).get("token");
  var METRICS = [
    ["val_accuracy", "val accuracy"],
    ["val_loss", "val loss"],
    ["train_accuracy", "train accuracy"],
    ["train_loss", "train loss"]
  ];
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var ui = { stage: null, metric: "val_accuracy", log: false, hidden: {}, sortKey: null, sortDir: -1 };
  var study = null;
  var lastText = null;
  var lastViewKey = null;
  var waitingToBeSeen = false;
  var charts = [];

  function withToken(path) {
    if (!token) return path;
    return path + (path.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(token);
  }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    var key;
    for (key in attrs || {}) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "class") node.className = attrs[key];
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), attrs[key]);
      else node.setAttribute(key, attrs[key]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function fmt(value) {
    return value === null || value === undefined || !isFinite(value) ? "–" : Number(value).toFixed(4);
  }

  function runHash(stage, run) {
    return "#run=" + encodeURIComponent(stage) + "/" + encodeURIComponent(run);
  }

  function stageHash(stage) {
    return "#stage=" + encodeURIComponent(stage);
  }

  // The page a hash names: a run's page, or the overview of a stage (by default the
  // last one picked, else the first with an epoch).
  function route() {
    var run = /^#run=([^/]*)\/(.*)$/.exec(location.hash);
    if (run) return { stage: decodeURIComponent(run[1]), run: decodeURIComponent(run[2]) };
    var stage = /^#stage=(.*)$/.exec(location.hash);
    if (stage) ui.stage = decodeURIComponent(stage[1]);
    if (!stageByName(ui.stage)) {
      var first = study.stages.filter(function (s) { return s.runs.some(function (r) { return r.epochs.epoch.length > 0; }); })[0] || study.stages[0];
      ui.stage = first ? first.name : null;
    }
    return { stage: ui.stage, run: null };
  }

  // What the page shows of the study: a poll that changes none of it draws nothing, so
  // a page open on a finished stage costs nothing while another stage trains.
  function viewKey(page) {
    var stages = study.stages.map(function (s) {
      return [s.name, s.winner, s.provisional, s.runs.map(function (r) { return r.state; })];
    });
    var stage = stageByName(page.stage);
    var shown = stage && page.run ? stage.runs.filter(function (r) { return r.name === page.run; }) : stage;
    return JSON.stringify([page, stages, shown, stage && stage.mistakes]);
  }

  function stageByName(name) {
    for (var i = 0; i < study.stages.length; i++) if (study.stages[i].name === name) return study.stages[i];
    return null;
  }

  // The best val accuracy so far: the result's once finished, else the best epoch yet.
  function bestAccuracy(run) {
    if (run.result && run.result.best_val_accuracy !== null) return run.result.best_val_accuracy;
    var values = run.epochs.val_accuracy.filter(isFinite);
    return values.length ? Math.max.apply(null, values) : null;
  }

  function setting(run, key) {
    for (var i = 0; i < run.settings.length; i++) if (run.settings[i][0] === key) return run.settings[i][1];
    return "";
  }

  function stateText(run) {
    var done = run.epochs.epoch.length;
    var text = run.state;
    if (run.state === "training") text += " (epoch " + done + "/" + run.planned_epochs + ", " + run.holder + ")";
    else if (run.state === "waiting" && done > 0) text += " (at epoch " + done + "/" + run.planned_epochs + ")";
    else if (run.result && run.result.status !== run.state) text += " (" + run.result.status.replace("_", " ") + ")";
    return text;
  }

  function totalEpochs() {
    var total = 0;
    study.stages.forEach(function (stage) {
      stage.runs.forEach(function (run) { total += run.epochs.epoch.length; });
    });
    return total;
  }

  function destroyCharts() {
    charts.forEach(function (chart) { chart.destroy(); });
    charts = [];
  }

  function chartWidth() {
    return Math.max(320, Math.min(root.clientWidth || 900, 1100) - 20);
  }

  // A uPlot chart of `series` ({label, xs, ys, color}) over epochs; hidden series are
  // remembered in `hidden` under `key(label)` across redraws.
  function lineChart(title, yLabel, series, log, hidden, key) {
    var epochs = {};
    series.forEach(function (s) { s.xs.forEach(function (x) { epochs[x] = true; }); });
    var xs = Object.keys(epochs).map(Number).sort(function (a, b) { return a - b; });
    var data = [xs];
    series.forEach(function (s) {
      var at = {};
      s.xs.forEach(function (x, i) { at[x] = s.ys[i]; });
      data.push(xs.map(function (x) {
        var y = at[x];
        if (y === undefined || y === null || !isFinite(y) || (log && y <= 0)) return null;
        return y;
      }));
    });
    var box = el("div", { class: "chart" });
    if (xs.length === 0) {
      box.append(el("p", { class: "note", text: title + ": no epoch yet." }));
      return box;
    }
    var options = {
      title: title,
      width: chartWidth(),
      height: 320,
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
      // Whole epochs only on the x axis.
      axes: [{ label: "epoch", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }, { label: yLabel }],
      series: [{ label: "epoch" }].concat(series.map(function (s) {
        return {
          label: s.label,
          stroke: s.color,
          width: s.bold ? 3 : 1.5,
          show: !(hidden && hidden[key(s.label)]),
          points: { show: xs.length < 30 },
          value: function (u, v) { return fmt(v); }
        };
      })),
      hooks: {
        setSeries: [function (u, index) {
          if (hidden && index > 0) hidden[key(u.series[index].label)] = !u.series[index].show;
        }]
      }
    };
    charts.push(new uPlot(options, data, box));
    return box;
  }

  function stageTable() {
    var head = el("tr", null, el("th", { text: "stage" }), el("th", { text: "finished" }),
      el("th", { text: "training" }), el("th", { text: "waiting" }), el("th", { text: "diverged" }),
      el("th", { text: "failed" }), el("th", { text: "of" }), el("th", { text: "winner" }));
    var body = el("tbody");
    study.stages.forEach(function (stage) {
      var count = function (state) {
        return stage.runs.filter(function (run) { return run.state === state; }).length;
      };
      var winner = stage.winner
        ? el("a", { href: runHash(stage.name, stage.winner), text: stage.winner })
        : (stage.provisional ? "starts from a stage without a winner yet" : "–");
      body.append(el("tr", { class: stage.name === ui.stage ? "picked" : "" },
        el("td", null, el("a", { href: stageHash(stage.name), text: stage.name })),
        el("td", { text: count("finished") }), el("td", { text: count("training") }),
        el("td", { text: count("waiting") }), el("td", { text: count("diverged") }),
        el("td", { text: count("failed") }), el("td", { text: stage.runs.length }), el("td", null, winner)));
    });
    return el("table", { class: "runs" }, el("thead", null, head), body);
  }

  function controls(stage) {
    var stagePick = el("select", { "aria-label": "stage", onchange: function (e) { location.hash = stageHash(e.target.value); } });
    study.stages.forEach(function (s) {
      var option = el("option", { value: s.name, text: s.name });
      if (s.name === stage.name) option.selected = true;
      stagePick.append(option);
    });
    var metricPick = el("select", { "aria-label": "metric", onchange: function (e) { ui.metric = e.target.value; render(); } });
    METRICS.forEach(function (m) {
      var option = el("option", { value: m[0], text: m[1] });
      if (m[0] === ui.metric) option.selected = true;
      metricPick.append(option);
    });
    var log = el("input", { type: "checkbox", onchange: function (e) { ui.log = e.target.checked; render(); } });
    log.checked = ui.log;
    return el("div", { class: "controls" },
      el("label", null, "stage ", stagePick), el("label", null, "metric ", metricPick),
      el("label", null, log, " log scale"),
      el("span", { class: "note", text: "click a run in the legend to hide or show it; hover for values" }));
  }

  function stageCurves(stage) {
    var label = METRICS.filter(function (m) { return m[0] === ui.metric; })[0][1];
    var series = stage.runs.filter(function (run) { return run.epochs.epoch.length > 0; }).map(function (run, i) {
      return {
        label: run.name,
        xs: run.epochs.epoch,
        ys: run.epochs[ui.metric],
        color: PALETTE[i % PALETTE.length],
        bold: run.name === stage.winner
      };
    });
    return lineChart(stage.name + ": " + label, label, series, ui.log, ui.hidden,
      function (name) { return stage.name + "/" + name; });
  }

  // Values of `key` over the stage's planned runs, in their first order.
  function values(stage, key) {
    var seen = [];
    stage.runs.forEach(function (run) {
      var value = setting(run, key);
      if (seen.indexOf(value) < 0) seen.push(value);
    });
    return seen;
  }

  function heatMap(stage) {
    var rowKey = stage.varied[0], colKey = stage.varied[1];
    var cols = values(stage, colKey);
    var all = stage.runs.map(bestAccuracy).filter(function (v) { return v !== null; });
    var low = all.length ? Math.min.apply(null, all) : 0, high = all.length ? Math.max.apply(null, all) : 1;
    var head = el("tr", null, el("th", { text: rowKey + " \\ " + colKey }));
    cols.forEach(function (col) { head.append(el("th", { text: col })); });
    var body = el("tbody");
    values(stage, rowKey).forEach(function (row) {
      var tr = el("tr", null, el("th", { text: row }));
      cols.forEach(function (col) {
        var run = stage.runs.filter(function (r) { return setting(r, rowKey) === row && setting(r, colKey) === col; })[0];
        var value = run ? bestAccuracy(run) : null;
        var td = el("td", { class: "cell" });
        if (run && value !== null) {
          var shade = high > low ? (value - low) / (high - low) : 1;
          td.style.background = "hsl(210, 70%, " + (95 - 55 * shade) + "%)";
          td.style.color = shade > 0.6 ? "#fff" : "#000";
          td.append(el("a", { href: runHash(stage.name, run.name), text: fmt(value) }));
          if (run.state !== "finished" && run.state !== "diverged") td.append(el("div", { class: "small", text: run.state }));
        } else {
          td.append(run ? run.state : "–");
        }
        tr.append(td);
      });
      body.append(tr);
    });
    return el("div", null, el("h3", { text: "Best val accuracy over the grid" }),
      el("table", { class: "heat" }, el("thead", null, head), body));
  }

  // The runs' hyperparameters against their results, sortable by any column.
  function hparamsTable(stage) {
    var keys = [];
    stage.runs.forEach(function (run) {
      run.settings.forEach(function (pair) {
        if (keys.indexOf(pair[0]) < 0 && values(stage, pair[0]).length > 1) keys.push(pair[0]);
      });
    });
    var columns = [["run", function (r) { return r.name; }]];
    keys.forEach(function (key) {
      columns.push([key, function (r) { var v = setting(r, key); return isNaN(Number(v)) || v === "" ? v : Number(v); }]);
    });
    columns = columns.concat([
      ["state", stateText],
      ["epochs", function (r) { return r.epochs.epoch.length; }],
      ["best val acc", bestAccuracy],
      ["best val loss", function (r) { return r.result ? r.result.best_val_loss : null; }],
      ["test acc", function (r) { return r.result ? r.result.test_accuracy : null; }],
      ["bal. acc", function (r) { return r.result ? r.result.test_balanced_accuracy : null; }],
      ["macro F1", function (r) { return r.result ? r.result.test_macro_f1 : null; }],
      ["AUC", function (r) { return r.result ? r.result.test_auc : null; }],
      ["trainable", function (r) { return r.result ? r.result.trainable_params : null; }],
      ["seconds", function (r) { return r.result ? Math.round(r.result.seconds) : null; }]
    ]);
    var rows = stage.runs.slice();
    if (ui.sortKey !== null) {
      var pick = columns.filter(function (c) { return c[0] === ui.sortKey; })[0];
      if (pick) {
        rows.sort(function (a, b) {
          var x = pick[1](a), y = pick[1](b);
          if (x === null || x === undefined) return 1;
          if (y === null || y === undefined) return -1;
          return (x < y ? -1 : x > y ? 1 : 0) * ui.sortDir;
        });
      }
    }
    var head = el("tr");
    columns.forEach(function (column) {
      var arrow = ui.sortKey === column[0] ? (ui.sortDir > 0 ? " ▲" : " ▼") : "";
      head.append(el("th", {
        class: "sortable", title: "sort by " + column[0],
        onclick: function () {
          ui.sortDir = ui.sortKey === column[0] ? -ui.sortDir : -1;
          ui.sortKey = column[0];
          render();
        }
      }, column[0] + arrow));
    });
    var body = el("tbody");
    rows.forEach(function (run) {
      var tr = el("tr", { class: run.name === stage.winner ? "winner" : "" });
      columns.forEach(function (column, i) {
        var value = column[1](run);
        if (i === 0) tr.append(el("td", null, el("a", { href: runHash(stage.name, run.name), text: run.name })));
        else tr.append(el("td", { text: typeof value === "number" && !Number.isInteger(value) ? fmt(value) : (value === null ? "–" : value) }));
      });
      body.append(tr);
    });
    return el("div", null, el("h3", { text: "Hyperparameters and results (click a column to sort)" }),
      el("table", { class: "runs hparams" }, el("thead", null, head), body));
  }

  function overview() {
    var stage = stageByName(ui.stage);
    var view = el("section", { class: "overview" }, el("h2", { text: "Stages" }), stageTable());
    if (!stage) return view;
    view.append(el("h2", { text: "Stage " + stage.name }), controls(stage), stageCurves(stage));
    if (stage.winner) view.append(el("p", null, "Winner: ", el("a", { href: runHash(stage.name, stage.winner), text: stage.winner })));
    if (stage.varied.length === 2) view.append(heatMap(stage));
    view.append(hparamsTable(stage));
    return view;
  }

  // Rows and columns named after the classes (the report's tables do the same); a
  // class without a name keeps its number.
  function confusionTable(matrix, classes) {
    var most = 1;
    var name = function (i) { return classes && classes[i] !== undefined ? classes[i] : i; };
    matrix.forEach(function (row) { row.forEach(function (n) { most = Math.max(most, n); }); });
    var head = el("tr", null, el("th", { text: "true \\ predicted" }));
    matrix.forEach(function (_, i) { head.append(el("th", { text: name(i) })); });
    var body = el("tbody");
    matrix.forEach(function (row, i) {
      var tr = el("tr", null, el("th", { text: name(i) }));
      row.forEach(function (n, j) {
        var td = el("td", { class: "cell", text: n });
        var shade = n / most;
        td.style.background = i === j ? "hsl(120, 45%, " + (95 - 50 * shade) + "%)" : "hsl(0, 60%, " + (97 - 45 * shade) + "%)";
        tr.append(td);
      });
      body.append(tr);
    });
    return el("table", { class: "heat confusion" }, el("thead", null, head), body);
  }

  function runPage(stageName, runName) {
    var stage = stageByName(stageName);
    var run = stage && stage.runs.filter(function (r) { return r.name === runName; })[0];
    var back = el("p", null, el("a", { href: stageHash(stageName), text: "← all stages" }));
    if (!run) return el("section", null, back, el("p", { text: "No run " + stageName + "/" + runName + " in this study." }));
    var view = el("section", { class: "run" }, back, el("h2", { text: stage.name + " / " + run.name }),
      el("p", { text: stateText(run) + (run.note ? ": " + run.note : "") }));
    var settings = el("tbody");
    run.settings.forEach(function (pair) { settings.append(el("tr", null, el("th", { text: pair[0] }), el("td", { text: pair[1] }))); });
    view.append(el("table", { class: "runs settings" }, settings));
    var both = function (a, b) {
      return [
        { label: a.replace("_", " "), xs: run.epochs.epoch, ys: run.epochs[a], color: PALETTE[0] },
        { label: b.replace("_", " "), xs: run.epochs.epoch, ys: run.epochs[b], color: PALETTE[1] }
      ];
    };
    view.append(lineChart("loss", "loss", both("train_loss", "val_loss"), ui.log, null, null));
    view.append(lineChart("accuracy", "accuracy", both("train_accuracy", "val_accuracy"), false, null, null));
    if (run.result) {
      var r = run.result;
      var rows = [["status", r.status], ["best epoch", r.best_epoch === null ? "–" : r.best_epoch],
        ["best val accuracy", fmt(r.best_val_accuracy)], ["val loss there", fmt(r.best_val_loss)],
        ["test accuracy", fmt(r.test_accuracy)], ["balanced accuracy", fmt(r.test_balanced_accuracy)],
        ["macro F1", fmt(r.test_macro_f1)], ["AUC", fmt(r.test_auc)], ["trainable parameters", r.trainable_params],
        ["seconds", Math.round(r.seconds)]];
      if (r.reused_from) rows.push(["reused from", r.reused_from]);
      var body = el("tbody");
      rows.forEach(function (row) { body.append(el("tr", null, el("th", { text: row[0] }), el("td", { text: row[1] }))); });
      view.append(el("h3", { text: "Results (best epoch's weights on the test split)" }), el("table", { class: "runs" }, body));
    }
    if (run.confusion) view.append(el("h3", { text: "Test confusion matrix" }), confusionTable(run.confusion, run.classes));
    if (stage.winner === run.name && stage.mistakes.length) {
      view.append(el("h3", { text: "Most confident mistakes (from the last cellnets report)" }));
      if (live) {
        stage.mistakes.forEach(function (path) {
          view.append(el("img", { class: "mistake", alt: path, src: withToken("files/" + path) }));
        });
      } else {
        view.append(el("p", { text: "They are in stage " + stage.name + "'s section of the report below." }));
      }
    }
    return view;
  }

  function counts() {
    root.dataset.epochs = String(totalEpochs());
    root.dataset.runs = String(study.stages.reduce(function (n, s) { return n + s.runs.length; }, 0));
  }

  function render() {
    if (!study) return;
    destroyCharts();
    var page = route();
    lastViewKey = viewKey(page);
    var heading = el("header", null, el("h1", { text: "cellnets: " + study.manifest }),
      el("p", { class: "note", text: live ? "live: updated " + new Date().toLocaleTimeString() + ", every " + POLL_MS / 1000 + " s" : "snapshot of the study when the report was written" }));
    if (live) heading.append(el("p", null, el("a", { href: withToken("files/report.html"), text: "the last written report.html" })));
    var content = page.run ? runPage(page.stage, page.run) : overview();
    root.replaceChildren(heading, content);
    counts();
    document.getElementById("report").hidden = Boolean(page.run);
  }

  // A page in a hidden tab does not poll until it is seen again.
  function poll() {
    if (document.hidden) {
      waitingToBeSeen = true;
      return;
    }
    fetch(withToken("api/study"), { cache: "no-store" }).then(function (response) {
      if (!response.ok) throw new Error("the server answered " + response.status);
      return response.text();
    }).then(function (text) {
      if (text !== lastText) {
        lastText = text;
        study = JSON.parse(text);
        counts();
        if (viewKey(route()) !== lastViewKey) render();
      }
      root.dataset.polls = String(Number(root.dataset.polls || 0) + 1);
    }).catch(function (error) {
      var banner = el("p", { class: "error", text: "cannot reach cellnets serve (" + error.message + "); retrying" });
      root.prepend(banner);
      setTimeout(function () { banner.remove(); }, POLL_MS);
    }).then(function () { setTimeout(poll, POLL_MS); });
  }

  window.addEventListener("hashchange", render);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && waitingToBeSeen) {
      waitingToBeSeen = false;
      poll();
    }
  });
  if (live) {
    poll();
  } else {
    study = JSON.parse(document.getElementById("study-data").textContent);
    render();
  }
})();
