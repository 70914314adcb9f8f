// A small SVG writer for ferry's charts: elements with attributes, text and children, serialized as well-formed XML
// whatever the strings hold (markup characters escaped, control bytes and ill-formed UTF-8 replaced), numbers with
// two decimals (never NaN or infinity, which SVG cannot draw). Knows nothing of charts: bench_charts.cpp draws them.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::cli {

// Text fit for XML character data and attribute values: & < > " ' escaped; bytes XML 1.0 forbids (controls other
// than tab, newline, return) and bytes of ill-formed UTF-8 become '?'.
std::string xml_escape(std::string_view text);

// "12.35": two decimals, trailing zeros and a bare point dropped ("12.3", "12"); 0 for NaN or infinity.
std::string svg_number(double v);

class SvgElement {
 public:
  explicit SvgElement(std::string name) : m_name(std::move(name)) {}

  SvgElement& attr(std::string_view key, std::string_view value);
  SvgElement& attr(std::string_view key, const char* value) { return attr(key, std::string_view(value)); }
  SvgElement& attr(std::string_view key, double value) { return attr(key, std::string_view(svg_number(value))); }
  // Character data (escaped); comes before the children.
  SvgElement& text(std::string_view content);
  // Appends a child and returns it, for building in place (valid until the next add() to this element).
  SvgElement& add(SvgElement child);
  SvgElement& add(std::string name) { return add(SvgElement(std::move(name))); }

  // The element and its children, indented two spaces per level, one element per line.
  void write(std::string& out, int depth = 0) const;

 private:
  std::string m_name;
  std::vector<std::pair<std::string, std::string>> m_attrs;  // values already escaped
  std::string m_text;                                        // already escaped
  std::vector<SvgElement> m_children;
};

// An <svg> document of a fixed size in user units (pixels), with a white background and the style charts share.
class SvgDocument {
 public:
  SvgDocument(double width, double height);
  SvgElement& root() noexcept { return m_root; }
  double width() const noexcept { return m_width; }
  double height() const noexcept { return m_height; }
  // The XML declaration and the document.
  std::string str() const;

 private:
  double m_width, m_height;
  SvgElement m_root;
};

// Shapes, as elements to add() somewhere.
SvgElement svg_rect(double x, double y, double w, double h, std::string_view fill);
SvgElement svg_line(double x1, double y1, double x2, double y2, std::string_view stroke, double width = 1);
// anchor: "start", "middle" or "end".
SvgElement svg_text(double x, double y, std::string_view content, std::string_view anchor = "start", double size = 12);
SvgElement svg_polyline(const std::vector<std::pair<double, double>>& points, std::string_view stroke,
                        double width = 2);
SvgElement svg_circle(double cx, double cy, double r, std::string_view fill);
// A tooltip for its parent element.
SvgElement svg_title(std::string_view content);

}  // namespace ferry::cli
