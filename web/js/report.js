// DiT Accel Report: show the node's table on the node after a run.
// ComfyUI's frontend draws a node's "images" UI output itself (the plot), but text only where a
// frontend extension does it; this one puts the table in a read-only text box on the node.
import { app } from "../../../scripts/app.js";

const NODE = "DiTAccelReport";

app.registerExtension({
  name: "DiTAccel.ReportOnNode",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = Array.isArray(message?.text) ? message.text.join("\n") : "";
      let box = this.ditaccelReport;
      if (!box) {
        box = document.createElement("textarea");
        box.readOnly = true;
        box.className = "ditaccel-report";
        box.spellcheck = false;
        box.style.cssText =
          "width:100%;height:100%;box-sizing:border-box;font-family:monospace;font-size:10px;" +
          "white-space:pre;overflow:auto;resize:none;";
        // not serialized: the workflow's widget values stay the node's inputs only
        this.addDOMWidget("report", "ditaccel_report", box, { serialize: false });
        this.ditaccelReport = box;
        this.setSize([Math.max(this.size[0], 720), Math.max(this.size[1], 480)]);
      }
      box.value = text;
      this.setDirtyCanvas?.(true, true);
    };
  },
});
