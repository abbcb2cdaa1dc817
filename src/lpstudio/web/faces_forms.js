// lpstudio · several faces that speak or are driven: uploads sent as a form (the speech audio of voice.js,
// the driving video or template of the drive tab, tabs.js) go to the face(s) chosen on the portrait
// (faces.js), as JSON requests do through lpFacesBody. Hook:
// lpFacesForm(path, form) appends ``faces`` ("all", or the clicked face's number) to a FormData.
"use strict";

const LP_FACES_FORM_PATHS = new Set(["/generate-audio", "/drive"]);

function lpFacesForm(path, form) {
  if (typeof lpFaces === "undefined" || lpFaces.animatable <= 1 || !LP_FACES_FORM_PATHS.has(path)) return form;
  if (lpFaces.all) form.append("faces", "all");
  else if (lpFaces.selected !== lpFaces.primary) form.append("faces", String(lpFaces.selected));
  return form;   // the session's own face: the usual single-face path
}

window.lpFacesForm = lpFacesForm;
