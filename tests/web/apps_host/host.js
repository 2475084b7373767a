// A test host for MCP Apps, written the way the ext-apps documentation describes one: the official MCP
// client connects to the server over Streamable HTTP, declares the io.modelcontextprotocol/ui extension
// (unless ?apps=0), and the official AppBridge renders a tool's ui:// resource in a sandboxed iframe with
// the content-security policy the resource declares. Tests drive it through `window.testHost`.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import {
  AppBridge,
  PostMessageTransport,
  getToolUiResourceUri,
  isToolVisibilityAppOnly,
} from "@modelcontextprotocol/ext-apps/app-bridge";

const UI = "io.modelcontextprotocol/ui";
const MIME = "text/html;profile=mcp-app";
const apps = new URLSearchParams(location.search).get("apps") !== "0";
const info = { name: "glmtts-test-host", version: "1.0.0" };
const client = new Client(info, { capabilities: apps ? { extensions: { [UI]: { mimeTypes: [MIME] } } } : {} });
await client.connect(new StreamableHTTPClientTransport(new URL("/mcp", location.origin)));
const tools = (await client.listTools()).tools;
const modelContext = [];

// The CSP a host builds from the resource's _meta.ui.csp: nothing from outside unless declared.
function cspOf(declared) {
  const list = (key) => (declared && declared[key] ? declared[key].join(" ") : "");
  const resources = list("resourceDomains");
  return [
    "default-src 'none'",
    `script-src 'unsafe-inline' ${resources}`,
    `style-src 'unsafe-inline' ${resources}`,
    `img-src data: blob: ${resources}`,
    `media-src data: blob: ${resources}`,
    `font-src data: ${resources}`,
    `connect-src ${list("connectDomains") || "'none'"}`,
    `frame-src ${list("frameDomains") || "'none'"}`,
    "base-uri 'none'",
  ].join("; ");
}

async function render(tool, args) {
  const uri = getToolUiResourceUri(tool);
  const content = (await client.readResource({ uri })).contents[0];
  if (content.mimeType !== MIME) throw new Error(`unexpected view type ${content.mimeType}`);
  const csp = cspOf(content._meta && content._meta.ui && content._meta.ui.csp);
  const html = content.text.replace("<head>", `<head><meta http-equiv="Content-Security-Policy" content="${csp}">`);
  const frame = document.createElement("iframe");
  frame.setAttribute("sandbox", "allow-scripts");
  frame.setAttribute("allow", "autoplay");
  frame.title = `${tool.name} view`;
  frame.style.height = "260px";
  document.getElementById("views").append(frame);
  const bridge = new AppBridge(
    client,
    { name: info.name, version: info.version },
    { serverTools: {}, serverResources: {}, updateModelContext: { text: {} } },
    { hostContext: { theme: "light", platform: "web", styles: { variables: { "--color-background-primary": "#ffffff" } } } },
  );
  bridge.onupdatemodelcontext = async (params) => {
    modelContext.push(params);
    return {};
  };
  bridge.onsizechange = ({ height }) => {
    if (height) frame.style.height = `${height}px`;
  };
  const ready = new Promise((resolve) => (bridge.oninitialized = resolve));
  await bridge.connect(new PostMessageTransport(frame.contentWindow, frame.contentWindow));
  frame.srcdoc = html;
  await ready;
  bridge.sendToolInput({ arguments: args });
  return { frame, bridge };
}

window.testHost = {
  apps,
  toolNames: tools.map((t) => t.name),
  modelToolNames: tools.filter((t) => !isToolVisibilityAppOnly(t)).map((t) => t.name),
  modelContext,
  // Call a tool as the model would: its view (if any and if this host renders apps) shows the result.
  async callTool(name, args) {
    const tool = tools.find((t) => t.name === name);
    const view = apps && getToolUiResourceUri(tool) ? await render(tool, args) : null;
    const result = await client.callTool({ name, arguments: args });
    if (view) await view.bridge.sendToolResult(result);
    return result;
  },
};
document.getElementById("host-state").textContent = "ready";
