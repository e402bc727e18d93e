"""The console's words in Vietnamese (the default) and English."""

from __future__ import annotations

LANGUAGES = ("vi", "en")

TEXT: dict[str, dict[str, str]] = {
    "title": {"vi": "Bảng điều khiển vận hành", "en": "Operator console"},
    "sign_in": {"vi": "Đăng nhập", "en": "Sign in"},
    "sign_out": {"vi": "Đăng xuất", "en": "Sign out"},
    "username": {"vi": "Tên đăng nhập", "en": "Username"},
    "password": {"vi": "Mật khẩu", "en": "Password"},
    "role_viewer": {"vi": "người xem", "en": "viewer"},
    "role_operator": {"vi": "người vận hành", "en": "operator"},
    "role_admin": {"vi": "quản trị", "en": "admin"},
    "dead_letters": {"vi": "Thư lỗi", "en": "Dead letters"},
    "audit": {"vi": "Nhật ký thao tác", "en": "Audit trail"},
    "filter": {"vi": "Lọc", "en": "Filter"},
    "reason": {"vi": "Lý do", "en": "Reason"},
    "source": {"vi": "Nguồn", "en": "Source"},
    "destination": {"vi": "Đích", "en": "Destination"},
    "type": {"vi": "Loại sự kiện", "en": "Event type"},
    "agency": {"vi": "Cơ quan", "en": "Agency"},
    "dossier": {"vi": "Mã hồ sơ", "en": "Dossier code"},
    "state": {"vi": "Trạng thái", "en": "State"},
    "older_than": {"vi": "Cũ hơn (phút)", "en": "Older than (minutes)"},
    "parked_at": {"vi": "Thời điểm lỗi", "en": "Parked at"},
    "attempts": {"vi": "Số lần thử", "en": "Attempts"},
    "total": {"vi": "Tổng", "en": "Total"},
    "counts": {"vi": "Theo lý do", "en": "By reason"},
    "inspect": {"vi": "Xem", "en": "Inspect"},
    "replay": {"vi": "Gửi lại", "en": "Replay"},
    "replay_selected": {"vi": "Gửi lại các mục đã chọn", "en": "Replay selected"},
    "edit": {"vi": "Sửa và gửi lại", "en": "Edit and resubmit"},
    "discard": {"vi": "Hủy bỏ", "en": "Discard"},
    "why": {"vi": "Lý do thao tác", "en": "Why"},
    "to": {"vi": "Gửi tới", "en": "Send to"},
    "payload": {"vi": "Nội dung", "en": "Payload"},
    "masked": {"vi": "Dữ liệu cá nhân đã được che", "en": "Personal data masked"},
    "headers": {"vi": "Tiêu đề", "en": "Headers"},
    "history": {"vi": "Lịch sử các lần thử", "en": "Attempt history"},
    "signature": {"vi": "Chữ ký", "en": "Signature"},
    "timeline": {"vi": "Diễn biến hồ sơ", "en": "Dossier timeline"},
    "replays": {"vi": "Lỗi lại sau khi gửi lại", "en": "Failed again after replay"},
    "replay_of": {"vi": "Gửi lại từ", "en": "Replay of"},
    "no_items": {"vi": "Không có thư lỗi nào.", "en": "No dead letters."},
    "previous": {"vi": "Trang trước", "en": "Previous"},
    "next": {"vi": "Trang sau", "en": "Next"},
    "alerts": {"vi": "Ngưỡng cảnh báo", "en": "Alert thresholds"},
    "alert_dead": {"vi": "Thư lỗi mỗi giờ", "en": "Dead letters per hour"},
    "alert_queue": {"vi": "Tuổi tin nhắn cũ nhất (phút)", "en": "Oldest message age (minutes)"},
    "alert_cert": {"vi": "Chứng thư sắp hết hạn (ngày)", "en": "Certificate expiry (days)"},
    "alert_circuit": {"vi": "Mạch ngắt đang mở", "en": "Circuit open"},
    "no_warnings": {"vi": "Không có cảnh báo: mạch ngắt đóng, chứng thư còn hạn, bộ lưu thư lỗi "
                          "đang chạy", "en": "No warnings: circuits closed, certificates valid, "
                                              "the dead-letter keeper running"},
    "last_hour": {"vi": "Trong giờ qua", "en": "In the last hour"},
    "at": {"vi": "Thời điểm", "en": "When"},
    "actor": {"vi": "Người thực hiện", "en": "Who"},
    "action": {"vi": "Thao tác", "en": "Action"},
    "target": {"vi": "Đối tượng", "en": "Target"},
    "detail": {"vi": "Chi tiết", "en": "Detail"},
    "chain": {"vi": "Chuỗi băm", "en": "Hash chain"},
    "intact": {"vi": "nguyên vẹn", "en": "intact"},
    "broken": {"vi": "bị phá vỡ", "en": "broken"},
    "done": {"vi": "Đã thực hiện", "en": "Done"},
    "error": {"vi": "Lỗi", "en": "Error"},
    "role": {"vi": "Vai trò", "en": "Role"},
    "data_json": {"vi": "Dữ liệu đã sửa (JSON)", "en": "Corrected data (JSON)"},
    "view_only": {"vi": "Vai trò này chỉ được xem.", "en": "This role may only look."},
    "all": {"vi": "Tất cả", "en": "All"},
}


def translator(lang: str) -> dict[str, str]:
    lang = lang if lang in LANGUAGES else "vi"
    return {k: v[lang] for k, v in TEXT.items()}
