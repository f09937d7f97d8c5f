"""Domain logic. Plain async functions and classes over an AsyncSession; no aiogram here."""
