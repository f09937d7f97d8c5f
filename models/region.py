"""Kemendagri administrative regions: province, regency, district, village."""

from __future__ import annotations

from sqlalchemy import SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class Region(Base):
    __tablename__ = "regions"

    code: Mapped[str] = mapped_column(String(13), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    # 1 province, 2 regency/city, 3 district (kecamatan), 4 village (desa/kelurahan)
    level: Mapped[int] = mapped_column(SmallInteger)
    parent_code: Mapped[str | None] = mapped_column(String(13), index=True)
