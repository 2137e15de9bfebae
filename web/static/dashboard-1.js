// course-jobs dashboard: live status and progress, from the server's Server-Sent Events.
//
// A page that wants live updates names its stream in <body data-stream="...">: /api/stream (every
// job the caller sees) on the jobs page, /api/jobs/{id}/stream on a job's page. Messages
// (web/api/streams.py):
//   event: job    data: {"job_id", "status", "progress", "progress_message", "updated_at"}: a job's
//                 state now (on /api/stream, when its progress changed)
//   event: event  data: one of the job's events, as GET /api/jobs/{id} lists them (a transition
//                 names its to_status), with an SSE id, so that EventSource resumes after a
//                 reconnect with Last-Event-ID by itself
//   event: end    the job's stream reached a final state: closed here, or EventSource reconnects.
// Elements that show a job carry data-job-id; inside them, data-field names what they show.
// Everything works without this script, only not live.
(function () {
  "use strict";

  var FINAL = { completed: true, failed: true, cancelled: true };

  function each(nodes, action) { Array.prototype.forEach.call(nodes, action); }

  function jobElements(jobId) {
    return document.querySelectorAll('[data-job-id="' + (window.CSS && CSS.escape ? CSS.escape(jobId) : jobId) + '"]');
  }

  // A job's status, on every element of the page that shows that job.
  function showStatus(jobId, value) {
    var found = jobElements(jobId);
    each(found, function (element) {
      each(element.querySelectorAll('[data-field="status"]'), function (status) {
        if (status.textContent !== value) {
          status.textContent = value;
          status.className = "status status-" + value;
        }
      });
    });
    return found.length > 0;
  }

  // A job's current state (status and progress), on every element of the page that shows it.
  function showJob(job) {
    showStatus(job.job_id, job.status);
    var found = jobElements(job.job_id);
    each(found, function (element) {
      var percent = Math.max(0, Math.min(100, Number(job.progress) || 0));
      each(element.querySelectorAll('progress[data-field="progress"]'), function (bar) {
        bar.value = percent;
        bar.textContent = percent + "%";
      });
      each(element.querySelectorAll('[data-field="progress-text"]'), function (text) {
        text.textContent = percent + "%";
      });
      if ("progress_message" in job) {
        each(element.querySelectorAll('[data-field="progress-message"]'), function (text) {
          text.textContent = job.progress_message || "";
        });
      }
    });
    return found.length > 0;
  }

  // The jobs page: rows update in place (a transition arrives as an `event` with its
  // to_status, progress as a `job`); a job this page doesn't show, sent since it was loaded, is
  // announced (on the first page only: the others show older jobs).
  function jobsPage(source) {
    var firstPage = document.body.getAttribute("data-first-page") !== "false";
    var notice = document.getElementById("new-jobs");
    source.addEventListener("job", function (message) {
      showJob(JSON.parse(message.data));
    });
    source.addEventListener("event", function (message) {
      var event = JSON.parse(message.data);
      if (!event.to_status) return;
      var shown = showStatus(event.job_id, event.to_status);
      if (!shown && event.event === "enqueued" && firstPage && notice) notice.hidden = false;
      if (event.to_status === "active") {
        each(jobElements(event.job_id), function (row) {
          each(row.querySelectorAll('[data-field="attempt"]'), function (cell) {
            cell.textContent = String(event.attempt);
          });
        });
      }
    });
  }

  // A job's page: progress updates in place; an event brings the page's live parts again from
  // the server (its fields, actions and timeline, rendered as on load).
  function jobPage(source, live) {
    var pending = null;
    var url = live.getAttribute("data-live-url");
    var jobId = live.getAttribute("data-job-id");

    function swap(html, final) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      ["job-summary", "job-actions", "job-timeline"].forEach(function (id) {
        var old = document.getElementById(id);
        var replacement = fresh.getElementById(id);
        if (!old || !replacement) return;
        // Someone typing a reason keeps their field, unless the job is over (the form goes).
        if (!final && old.contains(document.activeElement) && document.activeElement !== document.body) return;
        old.replaceWith(document.importNode(replacement, true));
      });
    }

    // One request at a time; what is asked for meanwhile is fetched once, after it.
    var again = null;
    function refresh(final) {
      if (pending) {
        again = { final: final || (again !== null && again.final) };
        return;
      }
      pending = fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) { if (html) swap(html, final); })
        .catch(function () { /* the next message tries again */ })
        .then(function () {
          pending = null;
          if (again !== null) {
            var next = again;
            again = null;
            refresh(next.final);
          }
        });
    }

    source.addEventListener("job", function (message) {
      var job = JSON.parse(message.data);
      if (job.job_id !== jobId) return;
      showJob(job);
      if (FINAL[job.status]) refresh(true);
    });
    source.addEventListener("event", function (message) {
      var event = JSON.parse(message.data);
      if (event.job_id !== jobId) return;
      if (!document.querySelector('[data-event-id="' + event.id + '"]')) refresh(false);
    });
    source.addEventListener("end", function () {
      source.close();
      refresh(true);
    });
  }

  function start() {
    var stream = document.body.getAttribute("data-stream");
    if (!stream || !window.EventSource) return;
    var source = new EventSource(stream);
    var live = document.getElementById("job-live");
    if (live) jobPage(source, live);
    else jobsPage(source);
    window.addEventListener("pagehide", function () { source.close(); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
