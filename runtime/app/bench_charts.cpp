#include "bench_charts.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "bench_output.hpp"
#include "ferry/offload/size_parse.hpp"
#include "svg_writer.hpp"

namespace ferry::cli {
namespace {

// One colour per policy, the same in every chart (Tableau 10).
std::string policy_colour(Policy p) {
  switch (p) {
    case Policy::RESIDENT_FIRST:
      return "#4e79a7";
    case Policy::RESIDENT_STREAM:
      return "#f28e2b";
    case Policy::STREAM_ALL:
      return "#59a14f";
    case Policy::CPU_ALL:
      return "#e15759";
    case Policy::AUTO:
      return "#b07aa1";
  }
  return "#888888";
}

std::string lane_colour(TraceTrack t) {
  switch (t) {
    case TraceTrack::COPY:
      return "#59a14f";
    case TraceTrack::COMPUTE:
      return "#4e79a7";
    case TraceTrack::CPU:
      return "#e15759";
    case TraceTrack::HOST:
      return "#bab0ac";
  }
  return "#888888";
}

// "250 us", "12.5 ms", "2 s": a duration in seconds with the unit that reads best.
std::string duration_text(double s) {
  char text[32];
  if (s == 0)
    return "0";
  else if (s < 1e-3)
    std::snprintf(text, sizeof text, "%.3g us", s * 1e6);
  else if (s < 1)
    std::snprintf(text, sizeof text, "%.3g ms", s * 1e3);
  else
    std::snprintf(text, sizeof text, "%.3g s", s);
  return text;
}

// Tick values of a linear axis over [0, hi]: 1, 2 or 5 times a power of ten apart, at most 8 of them.
std::vector<double> linear_ticks(double hi) {
  if (!(hi > 0)) return {0};
  double step = std::pow(10.0, std::floor(std::log10(hi / 8)));
  for (const double m : {1.0, 2.0, 5.0, 10.0})
    if (hi / (step * m) <= 8) {
      step *= m;
      break;
    }
  std::vector<double> ticks;
  for (double v = 0; v <= hi * (1 + 1e-9); v += step) ticks.push_back(v);
  return ticks;
}

// Ticks of a log axis over [lo, hi]: 1, 2 and 5 times each power of ten inside it.
std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> ticks;
  for (int k = static_cast<int>(std::floor(std::log10(lo))); k <= static_cast<int>(std::ceil(std::log10(hi))); ++k)
    for (const double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10.0, k);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks.push_back(v);
    }
  return ticks;
}

std::string title_of(const BenchReport& r, const std::string& what) {
  std::string t = r.model.name + " on " + (r.env.gpu ? r.env.device : "cpu") + ": " + what;
  if (r.request.link_gbps > 0) t += " (simulated link: " + link_rate_text(r.request.link_gbps) + " GB/s)";
  return t;
}

// The budgets of the report, ascending, each once: the phase chart's x positions.
std::vector<const BenchArmSpec*> budget_axis(const BenchReport& r) {
  std::vector<const BenchArmSpec*> budgets;
  for (const BenchArmSpec& s : r.request.arms)
    if (std::none_of(budgets.begin(), budgets.end(), [&](const BenchArmSpec* b) { return b->vram == s.vram; }))
      budgets.push_back(&s);
  std::sort(budgets.begin(), budgets.end(), [](auto* a, auto* b) { return a->vram < b->vram; });
  return budgets;
}

struct Frame {  // a panel's plot area
  double x, y, w, h;
};

void draw_phase_panel(SvgElement& panel, const BenchReport& r, size_t test, const Frame& f) {
  const std::vector<const BenchArmSpec*> budgets = budget_axis(r);
  const std::string test_name = bench_tests(r.request)[test].name;
  auto x_of = [&](uint64_t vram) {
    const auto at = std::find_if(budgets.begin(), budgets.end(), [&](auto* b) { return b->vram == vram; });
    return f.x + f.w * (static_cast<double>(at - budgets.begin()) + 0.5) / static_cast<double>(budgets.size());
  };
  double lo = INFINITY, hi = 0;
  for (const BenchArm& a : r.arms)
    if (a.status == ArmStatus::OK) {
      const SampleStats s = a.tests[test].time();
      lo = std::min(lo, std::max(s.mean - s.stddev, s.mean * 0.5));
      hi = std::max(hi, s.mean + s.stddev);
    }
  panel.add(svg_text(f.x + f.w / 2, f.y - 10, test_name, "middle", 14)).attr("font-weight", "bold");
  panel.add(svg_line(f.x, f.y + f.h, f.x + f.w, f.y + f.h, "black"));
  panel.add(svg_line(f.x, f.y, f.x, f.y + f.h, "black"));
  for (const BenchArmSpec* b : budgets) {
    panel.add(svg_line(x_of(b->vram), f.y + f.h, x_of(b->vram), f.y + f.h + 5, "black"));
    panel.add(svg_text(x_of(b->vram), f.y + f.h + 18, b->vram_text, "middle", 11));
  }
  panel.add(svg_text(f.x + f.w / 2, f.y + f.h + 36, "VRAM budget", "middle", 12));
  const bool step = bench_tests(r.request)[test].kind == TestKind::STEP;
  SvgElement& y_label =
      panel.add(svg_text(0, 0, step ? "seconds per step (log scale)" : "time per test (log scale)", "middle", 12));
  y_label.attr("transform", "translate(" + svg_number(f.x - 58) + "," + svg_number(f.y + f.h / 2) + ") rotate(-90)");
  if (!(hi > 0)) {
    panel.add(svg_text(f.x + f.w / 2, f.y + f.h / 2, "no arm ran", "middle", 12));
    return;
  }
  // At least a decade, so close values do not fill the panel with ticks of one digit.
  lo = std::min(lo, hi / 10) / 1.2;
  hi *= 1.2;
  auto y_of = [&](double v) {
    return f.y + f.h * (1 - (std::log10(std::max(v, lo)) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)));
  };
  for (const double v : log_ticks(lo, hi)) {
    panel.add(svg_line(f.x, y_of(v), f.x + f.w, y_of(v), "#e0e0e0"));
    panel.add(svg_text(f.x - 6, y_of(v) + 4, duration_text(v), "end", 10));
  }
  std::vector<Policy> policies;
  for (const BenchArmSpec& s : r.request.arms)
    if (std::find(policies.begin(), policies.end(), s.policy) == policies.end()) policies.push_back(s.policy);
  for (const Policy p : policies) {
    std::vector<const BenchArm*> arms;
    for (const BenchArm& a : r.arms)
      if (a.status == ArmStatus::OK && a.spec.policy == p) arms.push_back(&a);
    if (arms.empty()) continue;
    std::sort(arms.begin(), arms.end(), [](auto* a, auto* b) { return a->spec.vram < b->spec.vram; });
    const std::string colour = policy_colour(p);
    SvgElement series("g");
    series.attr("class", "series").attr("data-policy", policy_name(p)).attr("data-test", test_name);
    std::vector<std::pair<double, double>> points;
    for (const BenchArm* a : arms) points.emplace_back(x_of(a->spec.vram), y_of(a->tests[test].time().mean));
    if (points.size() > 1) series.add(svg_polyline(points, colour));
    for (size_t i = 0; i < arms.size(); ++i) {
      const BenchTest& t = arms[i]->tests[test];
      const SampleStats time = t.time();
      const double x = points[i].first;
      if (time.stddev > 0)
        series.add(svg_line(x, y_of(time.mean + time.stddev), x, y_of(std::max(time.mean - time.stddev, lo)), colour));
      SvgElement& dot = series.add(svg_circle(x, points[i].second, 4, colour));
      dot.add(svg_title(arms[i]->spec.vram_text + " " + std::string(policy_name(p)) + " " + t.name + ": " +
                        duration_text(time.mean) + " (" + test_value_text(t) + " " + std::string(test_unit(t.kind)) +
                        "); " + arms[i]->plan + (arms[i]->link_paced ? "; simulated link" : "")));
    }
    panel.add(std::move(series));
  }
}

}  // namespace

std::string phase_chart_svg(const BenchReport& r) {
  const size_t n_tests = bench_tests(r.request).size();
  constexpr double kPanelW = 420, kPanelH = 260, kLeft = 80, kTop = 70, kGap = 90, kLegendW = 170;
  const double width = kLeft + static_cast<double>(n_tests) * (kPanelW + kGap) + kLegendW;
  SvgDocument doc(width, kTop + kPanelH + 70);
  doc.root().add(svg_text(16, 26, title_of(r, "time per test against the VRAM budget"), "start", 15));
  doc.root().add(svg_text(16, 44,
                          "mean of " + std::to_string(r.request.reps) + " repetitions, bars: ± one standard deviation",
                          "start", 11));
  for (size_t t = 0; t < n_tests; ++t) {
    SvgElement panel("g");
    panel.attr("class", "panel");
    draw_phase_panel(panel, r, t, {kLeft + static_cast<double>(t) * (kPanelW + kGap), kTop, kPanelW, kPanelH});
    doc.root().add(std::move(panel));
  }
  SvgElement legend("g");
  legend.attr("class", "legend");
  double y = kTop + 10;
  std::vector<Policy> shown;
  for (const BenchArm& a : r.arms) {
    const Policy p = a.spec.policy;
    if (std::find(shown.begin(), shown.end(), p) != shown.end()) continue;
    shown.push_back(p);
    const bool ran = std::any_of(r.arms.begin(), r.arms.end(),
                                 [&](const BenchArm& b) { return b.spec.policy == p && b.status == ArmStatus::OK; });
    const double x = width - kLegendW + 10;
    legend.add(svg_line(x, y, x + 24, y, policy_colour(p), 3));
    legend.add(svg_text(x + 30, y + 4, std::string(policy_name(p)) + (ran ? "" : " (did not run)"), "start", 12));
    y += 20;
  }
  doc.root().add(std::move(legend));
  return doc.str();
}

std::string timeline_svg(const BenchReport& r) {
  if (!r.timeline) return {};
  const BenchTimeline& tl = *r.timeline;
  const BenchArm& arm = r.arms[tl.arm];
  constexpr double kWidth = 1100, kLeft = 130, kRight = 30, kLaneH = 26, kTop = 60, kPanelGap = 70;
  constexpr TraceTrack kLanes[] = {TraceTrack::COPY, TraceTrack::COMPUTE, TraceTrack::CPU, TraceTrack::HOST};
  const std::vector<BenchTest> tests = bench_tests(r.request);
  struct Phase {
    std::string name;
    const std::vector<TraceSpan>* spans;
  };
  std::vector<Phase> phases;
  static const std::vector<TraceSpan> kNone;
  for (size_t i = 0; i < tests.size(); ++i) {
    const BenchTest& t = tests[i];
    const std::vector<TraceSpan>* spans = i < tl.phases.size() ? &tl.phases[i] : &kNone;
    phases.push_back(t.kind == TestKind::PREFILL      ? Phase{"one prefill (" + t.name + ")", spans}
                     : t.kind == TestKind::GENERATION ? Phase{"one decode step (of " + t.name + ")", spans}
                                                      : Phase{"one denoising step", spans});
  }
  const double panel_h = 4 * kLaneH + 40;
  SvgDocument doc(kWidth, kTop + static_cast<double>(phases.size()) * (panel_h + kPanelGap));
  doc.root().add(svg_text(
      16, 26, title_of(r, "timeline of " + arm.spec.vram_text + " " + std::string(policy_name(arm.spec.policy))),
      "start", 15));
  doc.root().add(svg_text(16, 44, arm.plan + (arm.link_paced ? "; copies paced (simulated link)" : ""), "start", 11));
  double y0 = kTop + 20;
  for (const Phase& phase : phases) {
    SvgElement panel("g");
    panel.attr("class", "panel").attr("data-phase", phase.name);
    double t0 = INFINITY, t1 = -INFINITY;
    for (const TraceSpan& s : *phase.spans) {
      t0 = std::min(t0, s.start_us);
      t1 = std::max(t1, s.start_us + s.duration_us);
    }
    const double span_us = t1 > t0 ? t1 - t0 : 1;
    const double plot_w = kWidth - kLeft - kRight;
    auto x_of = [&](double us) { return kLeft + plot_w * (us - t0) / span_us; };
    panel
        .add(svg_text(kLeft, y0 - 8,
                      phase.name + ": " + duration_text(phase.spans->empty() ? 0 : span_us * 1e-6) + ", " +
                          std::to_string(phase.spans->size()) + " spans",
                      "start", 13))
        .attr("font-weight", "bold");
    for (size_t l = 0; l < std::size(kLanes); ++l) {
      const TraceTrack track = kLanes[l];
      const double y = y0 + static_cast<double>(l) * kLaneH;
      SvgElement lane("g");
      lane.attr("class", "lane").attr("data-lane", trace_track_name(track)).attr("data-phase", phase.name);
      lane.add(svg_rect(kLeft, y, plot_w, kLaneH - 4, l % 2 == 0 ? "#f4f4f4" : "#fafafa"));
      lane.add(svg_text(kLeft - 8, y + kLaneH / 2 + 2, trace_track_name(track), "end", 12));
      for (const TraceSpan& s : *phase.spans) {
        if (s.track != track) continue;
        SvgElement& rect = lane.add(svg_rect(x_of(s.start_us), y + 2, std::max(plot_w * s.duration_us / span_us, 0.5),
                                             kLaneH - 8, lane_colour(track)));
        rect.attr("class", "span").attr("stroke", "white").attr("stroke-width", 0.3);
        std::string tip = s.name + ": " + duration_text(s.duration_us * 1e-6);
        if (s.bytes > 0 && s.duration_us > 0)
          tip += ", " + format_size(s.bytes) + " at " +
                 svg_number(static_cast<double>(s.bytes) / (s.duration_us * 1e3)) + " GB/s";
        rect.add(svg_title(tip));
      }
      panel.add(std::move(lane));
    }
    const double axis_y = y0 + 4 * kLaneH;
    panel.add(svg_line(kLeft, axis_y, kLeft + plot_w, axis_y, "black"));
    for (const double v : linear_ticks(span_us * 1e-3)) {  // ms
      const double x = x_of(t0 + v * 1e3);
      panel.add(svg_line(x, axis_y, x, axis_y + 5, "black"));
      panel.add(svg_text(x, axis_y + 18, duration_text(v * 1e-3), "middle", 10));
    }
    doc.root().add(std::move(panel));
    y0 += panel_h + kPanelGap;
  }
  return doc.str();
}

}  // namespace ferry::cli
