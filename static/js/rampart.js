/* Rampart dashboard behaviour: CSRF for htmx, toasts, keyboard shortcuts, drag-and-drop
 * reordering (Sortable) with a keyboard equivalent, bulk selection. No framework. */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // The page's reason/ticket for changes (templates/dashboard/_audit_bar.html) go with every
  // write that does not carry its own: HTMX requests and plain form posts alike.
  function auditValues() {
    var values = [];
    document.querySelectorAll("[data-audit-field]").forEach(function (input) {
      if (input.value.trim()) values.push([input.dataset.auditField, input.value.trim()]);
    });
    return values;
  }
  document.addEventListener("htmx:configRequest", function (evt) {
    evt.detail.headers["X-CSRFToken"] = csrfToken();
    if (evt.detail.verb === "get") return;
    var params = evt.detail.parameters;
    auditValues().forEach(function (pair) {
      if (!params[pair[0]]) params[pair[0]] = pair[1];
    });
  });
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!form.closest("#main") || (form.method || "").toLowerCase() !== "post") return;
    auditValues().forEach(function (pair) {
      var field = form.elements[pair[0]];
      if (field && !field.value) field.value = pair[1];
      else if (!field) {
        var hidden = document.createElement("input");
        hidden.type = "hidden"; hidden.name = pair[0]; hidden.value = pair[1];
        form.appendChild(hidden);
      }
    });
  }, true);

  // Toasts: servers send HX-Trigger {"toast": {"message": ..., "level": ...}}.
  function toast(message, level) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast align-items-center border-0 show text-bg-" + (level || "success");
    el.setAttribute("role", level === "danger" ? "alert" : "status");
    el.innerHTML = '<div class="d-flex"><div class="toast-body"></div>' +
      '<button type="button" class="btn-close btn-close-white me-2 m-auto" aria-label="Close"></button></div>';
    el.querySelector(".toast-body").textContent = message;
    el.querySelector("button").addEventListener("click", function () { el.remove(); });
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, level === "danger" ? 9000 : 4000);
  }
  document.body.addEventListener("toast", function (evt) {
    toast(evt.detail.message, evt.detail.level);
  });
  document.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail.xhr;
    if (!xhr.getResponseHeader("HX-Trigger")) {
      toast(xhr.status === 403 ? "Your role does not allow this." : "Request failed (" + xhr.status + ").", "danger");
    }
  });

  // Keyboard: "/" search, "n" new, Escape closes the editor panel.
  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  function closeEditor() {
    var panel = document.getElementById("editor-panel");
    if (panel && panel.innerHTML.trim()) { panel.innerHTML = ""; return true; }
    return false;
  }
  document.addEventListener("keydown", function (evt) {
    if (evt.key === "Escape" && closeEditor()) { evt.preventDefault(); return; }
    if (typing(evt.target) || evt.ctrlKey || evt.metaKey || evt.altKey) return;
    if (evt.key === "/") {
      var search = document.querySelector("[data-search]");
      if (search) { evt.preventDefault(); search.focus(); search.select(); }
    } else if (evt.key === "n") {
      var add = document.querySelector("[data-key=n]");
      if (add) { evt.preventDefault(); add.click(); }
    }
  });
  document.addEventListener("click", function (evt) {
    if (evt.target.closest("[data-close-editor]")) { evt.preventDefault(); closeEditor(); }
  });
  // Focus the first field of a freshly opened rule editor.
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.detail.target && evt.detail.target.id === "editor-panel") {
      var first = evt.detail.target.querySelector("select, input:not([type=hidden]), textarea");
      if (first) first.focus();
    }
  });

  // Reordering: report the moved rule and the neighbour it now sits next to.
  function place(table, row, focusAfter) {
    var before = row.nextElementSibling, after = row.previousElementSibling;
    var values = { rule: row.dataset.ruleId };
    if (before && before.dataset.ruleId) values.before = before.dataset.ruleId;
    else if (after && after.dataset.ruleId) values.after = after.dataset.ruleId;
    else return;
    if (focusAfter) sessionStorage.setItem("rampart-focus", row.id);
    htmx.ajax("POST", table.dataset.placeUrl, { values: values, swap: "none", source: table });
  }
  function initSortable(root) {
    if (typeof Sortable === "undefined") return;
    root.querySelectorAll("tbody[data-sortable]").forEach(function (tbody) {
      if (tbody._sortable) return;
      var table = tbody.closest("[data-place-url]");
      tbody._sortable = Sortable.create(tbody, {
        handle: ".drag-handle", animation: 120, draggable: "tr[data-rule-id]",
        onEnd: function (evt) { if (evt.oldIndex !== evt.newIndex) place(table, evt.item, false); }
      });
    });
    var focusId = sessionStorage.getItem("rampart-focus");
    if (focusId) {
      var row = document.getElementById(focusId);
      if (row) { sessionStorage.removeItem("rampart-focus"); row.focus(); row.classList.add("drop-flash"); }
    }
  }
  document.addEventListener("keydown", function (evt) {
    var row = evt.target.closest && evt.target.closest("tr[data-rule-id]");
    if (!row || !evt.altKey || (evt.key !== "ArrowUp" && evt.key !== "ArrowDown")) return;
    var tbody = row.parentElement;
    if (!tbody.hasAttribute("data-sortable")) return;
    evt.preventDefault();
    if (evt.key === "ArrowUp" && row.previousElementSibling) tbody.insertBefore(row, row.previousElementSibling);
    else if (evt.key === "ArrowDown" && row.nextElementSibling) tbody.insertBefore(row.nextElementSibling, row);
    else return;
    row.focus();
    place(row.closest("[data-place-url]"), row, true);
  });

  // Bulk selection: select-all on the page and a live count.
  function updateCount() {
    var counter = document.querySelector("[data-selected-count]");
    if (counter) {
      var n = document.querySelectorAll('input[name=rules][form=bulk-form]:checked').length;
      counter.textContent = n + " selected";
    }
  }
  document.addEventListener("change", function (evt) {
    if (evt.target.matches("[data-select-all]")) {
      document.querySelectorAll('input[name=rules][form=bulk-form]').forEach(function (box) {
        box.checked = evt.target.checked;
      });
    }
    if (evt.target.matches("[data-select-all], input[name=rules]")) updateCount();
  });

  document.addEventListener("DOMContentLoaded", function () {
    initSortable(document);
    if (window.htmx) htmx.onLoad(function (el) { initSortable(el); updateCount(); });
  });
})();
