// Errors shown next to the field they name. The server's 400 bodies are OpenAI-shaped, `{"error": {"message",
// "param"}}`; every control says which request fields it stands for in `data-param` (space-separated), so the
// message lands beside it. Anything that names no field on the page goes to the form's own error line.

let counter = 0;

function visible(el) {
  return !el.closest("[hidden]");
}

/** The control (or group) in `scope` that stands for request field `param`, preferring visible ones. */
export function controlFor(scope, param) {
  if (!param) return null;
  const names = [param, String(param).split(".")[0], String(param).split("[")[0]];
  for (const name of names) {
    const all = [...scope.querySelectorAll(`[data-param~="${CSS.escape(name)}"]`)];
    const shown = all.filter(visible);
    if (shown.length) return shown[0];
  }
  return null;
}

function stripField(message, param) {
  if (!param) return message;
  for (const prefix of [`${param}: `, `${String(param).split(".")[0]}: `]) {
    if (message.startsWith(prefix)) return message.slice(prefix.length);
  }
  return message;
}

/** Shows `message` beside `control` (an input, select, textarea or fieldset) and marks it invalid. */
export function showNextTo(control, message) {
  if (!control.id) control.id = `control-${++counter}`;
  const id = `${control.id}-error`;
  let box = document.getElementById(id);
  if (!box) {
    box = document.createElement("p");
    box.id = id;
    box.className = "field-error";
    box.setAttribute("role", "alert");
    box.dataset.for = control.id;
    if (control.tagName === "FIELDSET") control.append(box);
    else control.insertAdjacentElement("afterend", box);
  }
  box.textContent = message;
  box.hidden = false;
  control.setAttribute("aria-invalid", "true");
  const described = new Set((control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
  described.add(id);
  control.setAttribute("aria-describedby", [...described].join(" "));
  const details = control.closest("details");
  if (details) details.open = true;
  return box;
}

/**
 * Shows an error from the server (an ApiError, or anything with a message) in `scope`: beside the field it names
 * when there is one, otherwise in `fallback`. Focuses the field so keyboard users land on it.
 */
export function showError(scope, error, fallback) {
  const param = error && error.param ? String(error.param) : null;
  const message = String((error && error.message) || error || "Something went wrong");
  const control = controlFor(scope, param);
  if (control) {
    showNextTo(control, stripField(message, param));
    const focusable = control.tagName === "FIELDSET" ? control.querySelector("input, select, textarea") : control;
    if (focusable) focusable.focus();
    return control;
  }
  if (fallback) {
    fallback.textContent = message;
    fallback.hidden = false;
  }
  return null;
}

/** Removes every error shown in `scope` (and the fallback line). */
export function clearErrors(scope, fallback) {
  for (const box of scope.querySelectorAll(".field-error[data-for]")) {
    const control = document.getElementById(box.dataset.for);
    if (control) {
      control.removeAttribute("aria-invalid");
      const rest = (control.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && x !== box.id);
      if (rest.length) control.setAttribute("aria-describedby", rest.join(" "));
      else control.removeAttribute("aria-describedby");
    }
    box.remove();
  }
  if (fallback) {
    fallback.textContent = "";
    fallback.hidden = true;
  }
}

/** Clears a field's error as soon as the user changes it. */
export function clearOnEdit(scope) {
  const clear = (event) => {
    const control = event.target.closest("[aria-invalid]");
    if (!control) return;
    const box = document.getElementById(`${control.id}-error`);
    if (box) box.remove();
    control.removeAttribute("aria-invalid");
  };
  scope.addEventListener("input", clear);
  scope.addEventListener("change", clear);
}
