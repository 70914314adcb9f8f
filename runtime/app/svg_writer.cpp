#include "svg_writer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ferry/text/utf8.hpp"

namespace ferry::cli {

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  // Ill-formed UTF-8 would make the whole document unreadable to an XML parser: keep its ASCII, drop the rest.
  const bool valid_utf8 = first_invalid_utf8(text) == kValidUtf8;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        if ((u < 0x20 && c != '\t' && c != '\n' && c != '\r') || u == 0x7f || (u >= 0x80 && !valid_utf8))
          out += '?';
        else
          out += c;
    }
  }
  return out;
}

std::string svg_number(double v) {
  if (!std::isfinite(v)) return "0";
  char text[48];
  std::snprintf(text, sizeof text, "%.2f", v);
  std::string s = text;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s == "-0" ? "0" : s;
}

SvgElement& SvgElement::attr(std::string_view key, std::string_view value) {
  m_attrs.emplace_back(std::string(key), xml_escape(value));
  return *this;
}

SvgElement& SvgElement::text(std::string_view content) {
  m_text += xml_escape(content);
  return *this;
}

SvgElement& SvgElement::add(SvgElement child) {
  m_children.push_back(std::move(child));
  return m_children.back();
}

void SvgElement::write(std::string& out, int depth) const {
  out.append(static_cast<size_t>(depth) * 2, ' ');
  out += '<' + m_name;
  for (const auto& [key, value] : m_attrs) out += ' ' + key + "=\"" + value + '"';
  if (m_text.empty() && m_children.empty()) {
    out += "/>\n";
    return;
  }
  out += '>' + m_text;
  if (!m_children.empty()) {
    out += '\n';
    for (const SvgElement& child : m_children) child.write(out, depth + 1);
    out.append(static_cast<size_t>(depth) * 2, ' ');
  }
  out += "</" + m_name + ">\n";
}

SvgDocument::SvgDocument(double width, double height) : m_width(width), m_height(height), m_root("svg") {
  m_root.attr("xmlns", "http://www.w3.org/2000/svg")
      .attr("width", width)
      .attr("height", height)
      .attr("viewBox", "0 0 " + svg_number(width) + " " + svg_number(height))
      .attr("font-family", "sans-serif");
  m_root.add(svg_rect(0, 0, width, height, "white"));
}

std::string SvgDocument::str() const {
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  m_root.write(out);
  return out;
}

SvgElement svg_rect(double x, double y, double w, double h, std::string_view fill) {
  SvgElement e("rect");
  e.attr("x", x).attr("y", y).attr("width", std::max(w, 0.0)).attr("height", std::max(h, 0.0)).attr("fill", fill);
  return e;
}

SvgElement svg_line(double x1, double y1, double x2, double y2, std::string_view stroke, double width) {
  SvgElement e("line");
  e.attr("x1", x1).attr("y1", y1).attr("x2", x2).attr("y2", y2).attr("stroke", stroke).attr("stroke-width", width);
  return e;
}

SvgElement svg_text(double x, double y, std::string_view content, std::string_view anchor, double size) {
  SvgElement e("text");
  e.attr("x", x).attr("y", y).attr("font-size", size).attr("text-anchor", anchor).text(content);
  return e;
}

SvgElement svg_polyline(const std::vector<std::pair<double, double>>& points, std::string_view stroke, double width) {
  std::string list;
  for (const auto& [x, y] : points) {
    if (!list.empty()) list += ' ';
    list += svg_number(x);
    list += ',';
    list += svg_number(y);
  }
  SvgElement e("polyline");
  e.attr("points", list).attr("fill", "none").attr("stroke", stroke).attr("stroke-width", width);
  return e;
}

SvgElement svg_circle(double cx, double cy, double r, std::string_view fill) {
  SvgElement e("circle");
  e.attr("cx", cx).attr("cy", cy).attr("r", r).attr("fill", fill);
  return e;
}

SvgElement svg_title(std::string_view content) {
  SvgElement e("title");
  e.text(content);
  return e;
}

}  // namespace ferry::cli
