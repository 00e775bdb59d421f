// rackplan: the job page polls its job and moves on to the result when it is done.
"use strict";
(function () {
  const box = document.getElementById("job");
  if (!box) return;
  const statusUrl = box.dataset.statusUrl;
  const show = (job) => {
    document.getElementById("job-status").textContent = job.status;
    document.getElementById("job-progress").value = job.progress;
    document.getElementById("job-elapsed").textContent = job.elapsed_s.toFixed(1);
    if (job.error) {
      const error = document.getElementById("job-error");
      error.textContent = job.error;
      error.hidden = false;
    }
    if (job.next) {
      document.getElementById("job-link").href = job.next;
      document.getElementById("job-result").hidden = false;
    }
  };
  const poll = async () => {
    try {
      const answer = await fetch(statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (answer.redirected || !answer.ok) { window.location.reload(); return; }
      const job = await answer.json();
      show(job);
      if (job.next) { window.location.assign(job.next); return; }
      if (job.status === "queued" || job.status === "running") setTimeout(poll, 400);
    } catch (e) {
      setTimeout(poll, 1500);
    }
  };
  if (box.dataset.next) { window.location.assign(box.dataset.next); return; }
  if (box.dataset.status === "queued" || box.dataset.status === "running") setTimeout(poll, 300);
})();
