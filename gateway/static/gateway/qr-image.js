// A QR code's text drawn as a PNG data URL, in the browser: the gateway pushes the text only
// (`session.qr` on the WebSockets), so no process draws a code nobody looks at. The same picture
// as the API's `GET …/qr` (sessions_app/services/qr.py): error correction M, 8 px a module and a
// border of 2 modules. Encoder: qrcode.js beside this file (qrcode-generator 2.0.4, MIT).
window.qrImage = function (text) {
  const scale = 8, border = 2;
  qrcode.stringToBytes = qrcode.stringToBytesFuncs["UTF-8"];
  const code = qrcode(0, "M");
  code.addData(text, "Byte");
  code.make();
  const modules = code.getModuleCount();
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = (modules + 2 * border) * scale;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.fillStyle = "#000";
  for (let row = 0; row < modules; row++) {
    for (let col = 0; col < modules; col++) {
      if (code.isDark(row, col)) context.fillRect((col + border) * scale, (row + border) * scale, scale, scale);
    }
  }
  return canvas.toDataURL("image/png");
};
